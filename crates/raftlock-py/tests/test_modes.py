"""Lock modes against the shared 3-node cluster: shared locks (readers
together, a writer waits for all of them), semaphores (never more than
``limit`` holders), and ModeConflict when a name is used in another mode."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from typing import List, Tuple

import pytest

import raftlock


def wait_until(what, predicate, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.05)


def test_two_readers_hold_together(client, other_client, name):
    with client.lock(name, shared=True, timeout=10) as r1:
        # An exclusive lock would make this time out.
        with other_client.lock(name, shared=True, timeout=10) as r2:
            assert r1.mode == r2.mode == "shared"
            assert r1.token and r2.token
            info = client.lock_info(name)
            assert info is not None and info.limit == 0
            assert [h.mode for h in info.holders] == ["shared", "shared"]
            assert {h.session_id for h in info.holders} == {r1.session_id, r2.session_id}
            assert info.holder == info.holders[0]
            assert "shared" in repr(r1)
    assert client.lock_info(name) is None


def test_a_writer_waits_for_every_reader(cluster, client, other_client, name):
    r1 = client.lock(name, shared=True)
    r2 = other_client.lock(name, shared=True)
    tokens = [r1.acquire(), r2.acquire()]
    with cluster.client(label="pytest writer") as third:
        writer = third.lock(name, timeout=30)
        got: List[int] = []
        thread = threading.Thread(target=lambda: got.append(writer.acquire()))
        thread.start()

        def writer_queued() -> bool:
            info = client.lock_info(name)
            return info is not None and [w.mode for w in info.waiters] == ["exclusive"]

        wait_until("the writer queued", writer_queued)
        r1.release()
        time.sleep(0.3)
        assert not got, "the writer got the lock while a reader held it"
        r2.release()
        thread.join(30)
        assert got and got[0] > max(tokens)
        assert writer.mode == "exclusive"
        info = client.lock_info(name)
        assert info is not None and [h.mode for h in info.holders] == ["exclusive"]
        writer.release()


def test_a_semaphore_of_two_never_has_three_holders(cluster, name):
    clients = [cluster.client(label=f"pytest sem {i}") for i in range(3)]
    events: List[Tuple[float, int]] = []
    limits: List[int] = []
    mutex = threading.Lock()
    errors: List[BaseException] = []

    def hold(c: raftlock.Client) -> None:
        try:
            with c.semaphore(name, 2, timeout=30) as slot:
                assert slot.token and slot.mode == "semaphore" and slot.limit == 2
                with mutex:
                    events.append((time.monotonic(), 1))
                info = c.lock_info(name)
                limits.append(info.limit if info else -1)
                time.sleep(1.0)
                with mutex:
                    events.append((time.monotonic(), -1))
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=hold, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in clients:
        c.close()
    assert not errors, errors
    assert limits == [2, 2, 2]
    running = most = 0
    for _, step in sorted(events):
        running += step
        most = max(most, running)
    # Ends are logged before the release, starts after the grant: the log
    # can only under-count what the cluster allowed at once, never over-count.
    assert most == 2, events


def test_another_mode_or_limit_is_a_mode_conflict(client, other_client, name):
    with client.semaphore(name, 2):
        with pytest.raises(raftlock.ModeConflict) as raised:
            other_client.semaphore(name, 3, blocking=False).acquire()
        assert raised.value.name == name
        assert "limit 2" in str(raised.value)
        assert isinstance(raised.value, raftlock.RaftlockError)
        again = pickle.loads(pickle.dumps(raised.value))
        assert (type(again), again.message, again.name) == (
            raftlock.ModeConflict, raised.value.message, name
        )
        with pytest.raises(raftlock.ModeConflict):
            other_client.lock(name, shared=True, timeout=5).acquire()
        with pytest.raises(raftlock.ModeConflict):
            other_client.lock(name, timeout=5).acquire()
        # The same limit is just another slot.
        with other_client.semaphore(name, 2, blocking=False) as slot:
            assert slot.token
    # Once nobody holds it, the name takes any mode.
    with other_client.lock(name, shared=True, blocking=False):
        pass


@pytest.mark.parametrize("limit", [0, -1, 65537, True, 2.0, "2", None])
def test_a_bad_limit_is_refused_before_any_call(name, limit):
    nowhere = raftlock.Client("127.0.0.1:1", retry_for=1)
    with pytest.raises(raftlock.InvalidArgument):
        nowhere.semaphore(name, limit)  # type: ignore[arg-type]


def test_a_mode_and_its_limit_go_together(client, name):
    with pytest.raises(raftlock.InvalidArgument):
        raftlock.Lock(client, name, mode="shared", limit=2)
    with pytest.raises(raftlock.InvalidArgument):
        raftlock.Lock(client, name, mode="reader")
    lock = pickle.loads(pickle.dumps(client.semaphore(name, 5)))
    assert (lock.mode, lock.limit) == ("semaphore", 5)


def test_a_cancelled_shared_wait_leaves_the_queue(client, other_client, name):
    async def main() -> None:
        with client.lock(name):
            task = asyncio.ensure_future(other_client.lock(name, shared=True).acquire_async())
            await asyncio.sleep(0)
            deadline = time.monotonic() + 20
            while not (client.lock_info(name) or raftlock.LockInfo(name, None, (), 0)).waiters:
                assert time.monotonic() < deadline, "the reader never queued"
                await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            info = client.lock_info(name)
            assert info is not None and info.waiters == ()
        assert client.lock_info(name) is None

    asyncio.run(main())
