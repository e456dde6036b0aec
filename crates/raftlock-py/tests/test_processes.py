"""Many processes, one lock: mutual exclusion across processes (forked and
spawned), fork safety, session expiry after SIGKILL, and Ctrl-C while
waiting."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import raftlock
import workers
from conftest import run_python


def _counter_dir(tmp_path: Path) -> str:
    (tmp_path / "counter").write_text("0")
    return str(tmp_path)


def test_mutual_exclusion_across_forked_processes(client, name, tmp_path):
    directory = _counter_dir(tmp_path)
    # The parent uses the client first (runtime, session, connections exist),
    # then forks: each worker must get its own session and runtime.
    with client.lock(name):
        pass
    workers.CLIENT = client
    try:
        with multiprocessing.get_context("fork").Pool(4) as pool:
            results = pool.starmap(
                workers.critical_sections, [(None, name, directory, 3)] * 8
            )
    finally:
        workers.CLIENT = None
    assert sorted(t for ts in results for t in ts) == sorted(
        set(t for ts in results for t in ts)
    )
    workers.check_log(directory, 24)


def test_mutual_exclusion_across_spawned_processes(client, name, tmp_path):
    directory = _counter_dir(tmp_path)
    # A Client pickles as its settings: each spawned worker makes its own.
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        pool.starmap(workers.critical_sections, [(client, name, directory, 3)] * 4)
    workers.check_log(directory, 12)


def _wait_for_child(pid: int, within: float) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"forked child {pid} hung for {within} s")


def test_a_forked_child_gets_its_own_session_and_runtime(client, other_client, name):
    held = client.lock(name)
    held.acquire()
    parent_session = held.session_id
    # Keep the parent's runtime busy across the fork: a thread blocked in a wait.
    def wait_then_release() -> None:
        with other_client.lock(name, timeout=30):
            pass

    waiting = threading.Thread(target=wait_then_release)
    waiting.start()
    time.sleep(0.3)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code, problems = 1, []
        try:
            os.close(read_end)
            if held.locked() or held.token is not None:
                problems.append("the child thinks it holds the parent's lock")
            try:
                client.lock(name, blocking=False).acquire()
                problems.append("the child was granted the parent's lock")
            except raftlock.LockNotAcquired:
                pass
            with client.lock(name + "/child", timeout=10) as mine:
                info = client.lock_info(name + "/child")
                if mine.session_id == parent_session:
                    problems.append("the child used the parent's session")
                if info is None or info.holder.session_id != mine.session_id:
                    problems.append(f"the cluster does not show the child's hold: {info}")
            try:
                held.release()
                problems.append("the child released the parent's lock")
            except raftlock.NotOwner:
                pass
            code = 0 if not problems else 1
        except BaseException as e:  # noqa: BLE001 - report anything to the parent
            problems.append(repr(e))
        finally:
            os.write(write_end, "\n".join(problems).encode())
            os._exit(code)
    os.close(write_end)
    code = _wait_for_child(pid, 60)
    problems = os.read(read_end, 65536).decode()
    os.close(read_end)
    assert code == 0, problems
    # The parent's hold is untouched; its waiter thread still works.
    info = client.lock_info(name)
    assert info is not None and info.holder.session_id == parent_session
    assert held.locked()
    held.release()
    waiting.join(30)
    assert not waiting.is_alive()


def test_session_expiry_after_sigkill_hands_the_lock_to_a_waiter(cluster, client, name):
    child = run_python(
        "import time, raftlock\n"
        f"c = raftlock.Client({cluster.endpoints!r}, label='doomed child',"
        f" **{cluster.client_kwargs()!r})\n"
        f"print(c.lock({name!r}, ttl=2).acquire(), flush=True)\n"
        "time.sleep(600)\n"
    )
    try:
        line = child.stdout.readline()
        assert line.strip().isdigit(), child.stderr.read() if child.poll() is not None else line
        child_token = int(line)
        got = {}

        def wait() -> None:
            with client.lock(name, timeout=30) as held:
                got["token"], got["at"] = held.token, time.monotonic()

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.5)
        info = client.lock_info(name)
        assert info.holder.label == "doomed child"
        assert [w.label for w in info.waiters] == ["pytest main"]
        assert "token" not in got
        killed_at = time.monotonic()
        child.send_signal(signal.SIGKILL)
        child.wait()
        waiter.join(30)
        assert got["token"] > child_token
        # Freed by expiry (TTL 2 s after the child's last keepalive), not at once.
        assert 0.3 <= got["at"] - killed_at <= 5.0, got["at"] - killed_at
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_ctrl_c_while_waiting_leaves_the_queue(cluster, client, name):
    with client.lock(name):
        child = run_python(
            "import raftlock\n"
            f"c = raftlock.Client({cluster.endpoints!r}, label='impatient child',"
            f" **{cluster.client_kwargs()!r})\n"
            "print('waiting', flush=True)\n"
            "try:\n"
            f"    c.lock({name!r}).acquire()\n"
            "    print('acquired', flush=True)\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted', flush=True)\n"
        )
        try:
            assert child.stdout.readline().strip() == "waiting"
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                info = client.lock_info(name)
                if [w.label for w in info.waiters] == ["impatient child"]:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the child never queued")
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=15)
            assert out.strip() == "interrupted", err
            assert child.returncode == 0
            assert client.lock_info(name).waiters == ()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
