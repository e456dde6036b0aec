"""Helpers for the gateway suite: a `raftlock gateway` process in front of
a real 3-node cluster (started by tests/conformance/support.py, imported,
not copied), a one-shot ZeroMQ request, the gateway's grant log, and the
check that the original post's sequential blocks came out whole."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import zmq

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "conformance"))

from cluster_credentials import DEFAULT_PRINCIPAL, clean_env, client_flags  # noqa: E402
from support import Cluster, _die_with_parent, free_port, raftlock_bin, wait_until  # noqa: E402

__all__ = ["Cluster", "Gateway", "check_blocks", "PostRun", "fixed_port_7899", "free_port", "wait_until"]

FIXTURES = HERE / "fixtures"
GRANT = re.compile(r"granted client=(\S+) lock=(\S+) token=(\d+)")


class Gateway:
    """`raftlock gateway` on ``url`` (a free port unless given), logging
    at info level to a file in the cluster's directory. It calls the
    cluster as ``principal`` (the suite's default lock principal), with
    the cluster's CA and that principal's token file (``--insecure`` on an
    insecure cluster)."""

    def __init__(self, cluster: Cluster, url: Optional[str] = None,
                 client_ttl: float = 600, extra: Tuple[str, ...] = (),
                 principal: str = DEFAULT_PRINCIPAL) -> None:
        self.cluster = cluster
        self.url = url or f"tcp://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self.log_path = cluster.dir / f"gateway-{port}-{time.time_ns()}.log"
        endpoints = ",".join(n.addr for n in cluster.nodes.values())
        self.args = [
            str(raftlock_bin()), "gateway", "--zmq", self.url, "--endpoints", endpoints,
            "--client-ttl", str(client_ttl), *client_flags(cluster.credentials, principal), *extra,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*_die_with_parent(), *self.args],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                env={**clean_env(), "RUST_LOG": "info"},
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.request("PING", timeout=1.0) == "PONG":
                    return
            except TimeoutError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"gateway did not start:\n{self.log()}")

    def request(self, message, timeout: float = 10.0) -> str:
        """Sends one request on a fresh REQ socket; returns the reply."""
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.url)
            if isinstance(message, str):
                sock.send_string(message)
            else:
                sock.send(message)
            if not sock.poll(int(timeout * 1000)):
                raise TimeoutError(f"no reply to {message!r:.80} within {timeout} s")
            return sock.recv().decode("utf-8", "replace")
        finally:
            sock.close()

    def alive(self) -> bool:
        return self.proc.poll() is None and self.request("PING") == "PONG"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def grants(self, lock: str) -> List[Tuple[str, int]]:
        """(client id, fencing token) of each grant of ``lock``, in log order."""
        return [(m[1], int(m[3])) for m in GRANT.finditer(self.log()) if m[2] == lock]

    def locks(self, prefix: str) -> list:
        """`raftlock locks PREFIX --json`: the cluster's view, as the
        read-only principal."""
        endpoints = ",".join(n.addr for n in self.cluster.running().values())
        credentials = self.cluster.credentials
        out = subprocess.run(
            [str(raftlock_bin()), "locks", prefix, "--json", "--endpoints", endpoints,
             *client_flags(credentials, "reader")],
            capture_output=True, text=True, timeout=60, check=True,
            env=clean_env(),
        )
        return json.loads(out.stdout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def fixed_port_7899() -> Iterator[None]:
    """Holds the machine-wide lock on port 7899, the one the original
    post's client has built in."""
    with open("/tmp/ports-7899.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


BLOCK = ["This", "is", "a", "sequential", "block"]


PARALLEL = re.compile(r"_(HAPPENING|IN|PARALLEL|BY \d+)")


def check_blocks(output: str, jobs: int) -> None:
    """The post's check: every `This is a sequential block by N` whole, in
    order, once per job; the `_` messages may fall anywhere. `print`
    writes a message and its newline separately, so one of those can land
    inside another process's line (`This_HAPPENING`): they are cut out
    before the lines are read."""
    lines = [line for line in PARALLEL.sub("", output).splitlines() if line]
    seen = []
    for start in range(0, len(lines), 6):
        block = lines[start:start + 6]
        words, last = block[:5], block[5] if len(block) == 6 else ""
        assert words == BLOCK and last.startswith("by "), (
            f"block {len(seen)} is broken: {block}\n--- output ---\n{output}"
        )
        seen.append(int(last[3:]))
    assert sorted(seen) == list(range(jobs)), f"jobs seen: {sorted(seen)}"


class PostRun:
    """The post's lock_test.py, run as its author ran it: in a terminal
    (a pty), so each process's prints are line-buffered and interleave
    line by line as they happen. It connects to tcp://127.0.0.1:7899 and
    sends DONE at the end."""

    def __init__(self) -> None:
        master, slave = pty.openpty()
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "lock_test.py"], cwd=FIXTURES,
            stdin=subprocess.DEVNULL, stdout=slave, stderr=self.stderr,
        )
        os.close(slave)
        self.lines: List[str] = []
        self._reader = threading.Thread(target=self._read, args=(master,), daemon=True)
        self._reader.start()

    def _read(self, master: int) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer has closed the pty
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *done, pending = pending.split(b"\n")
            self.lines.extend(line.rstrip(b"\r").decode("utf-8", "replace") for line in done)
        os.close(master)

    def blocks_done(self) -> int:
        return sum(1 for line in list(self.lines) if line.startswith("by "))

    def finish(self, timeout: float = 300) -> str:
        """Waits for the run; returns its output, failing if it failed."""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        output = "\n".join(self.lines)
        self.stderr.seek(0)
        errors = self.stderr.read().decode("utf-8", "replace")
        assert code == 0, f"lock_test.py exited {code}\n{output}\n{errors}"
        return output
