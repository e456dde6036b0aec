"""pytest fixtures: a real raftlock cluster of 3 `raftlock server` processes
on free loopback ports, each with its own temp data dir, that tests can
kill and restart; and clients for it.

The cluster is secured by default: TLS and tokens, with credentials made by
the binary (tests/conformance/cluster_credentials.py, shared with the
protocol suite), and clients made with ``ca=`` and ``token_file=``.
``RAFTLOCK_TEST_INSECURE=1`` runs it plain (``--insecure``, and clients
with ``insecure=True``).

The binary is ``$RAFTLOCK_BIN``, else ``<repo>/target/release/raftlock``
(``cargo build --release``; ``scripts/test-python`` builds it).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

import raftlock

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "tests" / "conformance"))

from cluster_credentials import (  # noqa: E402
    CLIENT_ENV_VARS,
    DEFAULT_PRINCIPAL,
    clean_env,
    client_env,
    client_flags,
    client_kwargs,
    make_credentials,
    server_flags,
)
FAST_RAFT = ["--heartbeat-ms", "50", "--election-min-ms", "300", "--election-max-ms", "600"]


def raftlock_bin() -> Path:
    path = Path(os.environ.get("RAFTLOCK_BIN") or REPO / "target" / "release" / "raftlock")
    if not path.is_file():
        pytest.fail(
            f"raftlock binary not found at {path}: run `cargo build --release` "
            "or set RAFTLOCK_BIN",
            pytrace=False,
        )
    return path


def _die_with_parent() -> None:
    """In the node process: get SIGKILL when pytest dies, so a killed test
    run leaves no servers behind (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (AttributeError, OSError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(count: int) -> List[int]:
    """``count`` different free ports: each listener is held until all are
    chosen, so the kernel cannot hand one out twice."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Cluster:
    """Real nodes on loopback; ``kill`` is SIGKILL, as in a crash. Its
    credentials (None when insecure) are in ``<dir>/credentials``."""

    def __init__(self, n: int = 3) -> None:
        self.bin = raftlock_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="raftlock-py-"))
        ports = free_ports(2 * n)
        self.credentials = make_credentials(self.bin, self.dir / "credentials", range(1, n + 1))
        # Clients reach node i at addrs[i], the other nodes at peer_addrs[i].
        self.addrs: Dict[int, str] = {i: f"127.0.0.1:{ports[i - 1]}" for i in range(1, n + 1)}
        self.peer_addrs: Dict[int, str] = {
            i: f"127.0.0.1:{ports[n + i - 1]}" for i in range(1, n + 1)
        }
        self.procs: Dict[int, subprocess.Popen] = {}
        for node in self.addrs:
            self.spawn(node)
        self.wait_for_leader()

    @property
    def endpoints(self) -> List[str]:
        return list(self.addrs.values())

    @property
    def endpoints_str(self) -> str:
        return ",".join(self.endpoints)

    def client_kwargs(self, principal: str = DEFAULT_PRINCIPAL) -> dict:
        """How a ``raftlock.Client`` reaches this cluster as ``principal``:
        ``ca=`` and ``token_file=`` (or ``insecure=True``)."""
        return client_kwargs(self.credentials, principal)

    def client_env(self, principal: str = DEFAULT_PRINCIPAL) -> dict:
        """The same for a process that reads it from the environment."""
        return {**client_env(self.credentials, principal), "RAFTLOCK_ENDPOINTS": self.endpoints_str}

    def client(self, label: Optional[str] = None, principal: str = DEFAULT_PRINCIPAL,
               **kwargs) -> raftlock.Client:
        return raftlock.Client(self.endpoints, label=label, **self.client_kwargs(principal),
                               **kwargs)

    def spawn(self, node: int) -> None:
        peers = ",".join(f"{i}={self.peer_addrs[i]}/{a}" for i, a in self.addrs.items())
        log = open(self.dir / f"node{node}.log", "ab")
        self.procs[node] = subprocess.Popen(
            [
                str(self.bin), "server", "--id", str(node),
                "--listen", self.addrs[node], "--peer-listen", self.peer_addrs[node],
                "--peers", peers,
                "--data-dir", str(self.dir / f"node{node}"),
                *server_flags(self.credentials, node),
                *FAST_RAFT,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "RUST_LOG": "info,openraft=warn"},
            preexec_fn=_die_with_parent,
        )
        log.close()

    def kill(self, node: int) -> None:
        proc = self.procs.pop(node)
        proc.kill()
        proc.wait()

    def status(self) -> dict:
        out = subprocess.run(
            [str(self.bin), "status", "--json", "--endpoints", self.endpoints_str,
             *client_flags(self.credentials, "reader")],
            capture_output=True, text=True, timeout=30, env=clean_env(),
        )
        try:
            return json.loads(out.stdout)
        except ValueError:
            return {"leader": None, "members": []}

    def wait_for_leader(self, within: float = 30.0) -> int:
        """Waits until one node leads and every running node is in its term."""
        deadline = time.monotonic() + within
        status: dict = {}
        while time.monotonic() < deadline:
            status = self.status()
            leader = status.get("leader")
            members = {m["id"]: m for m in status.get("members", [])}
            if leader is not None and leader in self.procs and leader in members:
                term = members[leader]["term"]
                if all(
                    node in members and members[node]["reachable"] and members[node]["term"] == term
                    for node in self.procs
                ):
                    return int(leader)
            time.sleep(0.1)
        raise AssertionError(f"no leader within {within} s: {status}\n{self.logs()}")

    def logs(self) -> str:
        text = []
        for node in self.addrs:
            path = self.dir / f"node{node}.log"
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-20:]
                text.append(f"--- node {node} ---\n" + "\n".join(lines))
        return "\n".join(text)

    def stop(self) -> None:
        for node in list(self.procs):
            self.kill(node)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def no_ambient_client_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Clients made without a transport find none in the caller's
    environment or profile directory: the tests say what they use."""
    with pytest.MonkeyPatch.context() as mp:
        for var in CLIENT_ENV_VARS:
            mp.delenv(var, raising=False)
        mp.setenv("RAFTLOCK_CONFIG_DIR", str(tmp_path_factory.mktemp("no-profile")))
        yield


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """One cluster shared by the tests that do not kill nodes."""
    c = Cluster()
    yield c
    c.stop()


@pytest.fixture
def fresh_cluster() -> Iterator[Cluster]:
    """A cluster of its own, for tests that kill nodes."""
    c = Cluster()
    yield c
    c.stop()


@pytest.fixture
def client(cluster: Cluster) -> Iterator[raftlock.Client]:
    c = cluster.client(label="pytest main")
    yield c
    c.close()


@pytest.fixture
def other_client(cluster: Cluster) -> Iterator[raftlock.Client]:
    """A second client in this process: its own sessions, its own label."""
    c = cluster.client(label="pytest other")
    yield c
    c.close()


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A lock name no other test uses."""
    return f"pytest/{request.node.name}/{time.time_ns()}"


def default_signals() -> None:
    """In a child, before exec: SIGINT and SIGHUP at their defaults, whatever
    the test run inherited (``nohup``, ``scripts/test &`` and some CI runners
    start it with them ignored, and an ignored signal stays ignored across
    exec: Python would then never raise KeyboardInterrupt)."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def run_python(code: str, env: Optional[dict] = None, **kwargs) -> subprocess.Popen:
    """Starts ``python -c code`` with the tests directory on sys.path, with
    default signal handling."""
    full_env = {**os.environ, "PYTHONPATH": str(HERE), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", code], env=full_env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=default_signals, **kwargs,
    )
