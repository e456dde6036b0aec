"""Helpers for the protocol conformance suite: a real 3-node raftlock
cluster of `raftlock server` processes on free loopback ports, and a client
made only of gRPC stubs that grpcio-tools generates from
proto/raftlock.proto when the suite starts. Nothing here uses the Rust
client or the raftlock Python package: the suite sees the server as a
client written in another language would, through the rules of
docs/protocol.md alone.

By default the cluster is secured as docs/security.md tells an operator
to secure one: TLS on both ports, node certificates between the nodes and
the principals of cluster_credentials.py, each channel trusting the
cluster's CA and sending its principal's token as ``authorization:
Bearer`` on every call. ``RAFTLOCK_TEST_INSECURE=1`` runs it plain
(``--insecure``).

The binary is ``$RAFTLOCK_BIN``, else ``<repo>/target/release/raftlock``
(``cargo build --release``; ``scripts/test-conformance`` builds it).
"""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import grpc
import pytest

from cluster_credentials import (
    DEFAULT_PRINCIPAL,
    ClusterCredentials,
    make_credentials,
    server_flags,
)

REPO = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "proto"
# Elections fast enough for the leader-loss tests, slow enough that a busy
# 2-core machine does not depose a healthy leader in the middle of a test.
RAFT_TIMING = ["--heartbeat-ms", "50", "--election-min-ms", "500", "--election-max-ms", "1000"]
# Every call gets a deadline, so a server that never answers fails a test
# instead of hanging the suite.
RPC_TIMEOUT = 20.0

ERROR_KIND = "raftlock-error"
LEADER_ID = "raftlock-leader-id"
LEADER_ADDR = "raftlock-leader-addr"
UNREACHABLE_LEADER = "raftlock-unreachable-leader"


def _generate_stubs(proto: str) -> Tuple[object, object]:
    """Runs protoc (from grpcio-tools) on ``proto/<proto>.proto`` into a
    temp dir and imports the generated modules."""
    from grpc_tools import protoc

    out = Path(tempfile.mkdtemp(prefix="raftlock-stubs-"))
    # grpc_tools ships the well-known protos; pass their dir like `protoc` would.
    well_known = Path(protoc.__file__).resolve().parent / "_proto"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO_DIR / f"{proto}.proto"),
        ]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed on {PROTO_DIR / proto}.proto (exit {code})")
    sys.path.insert(0, str(out))
    return importlib.import_module(f"{proto}_pb2"), importlib.import_module(f"{proto}_pb2_grpc")


pb, pb_grpc = _generate_stubs("raftlock")
raft_pb, raft_pb_grpc = _generate_stubs("raft")


def raftlock_bin() -> Path:
    path = Path(os.environ.get("RAFTLOCK_BIN") or REPO / "target" / "release" / "raftlock")
    if not path.is_file():
        pytest.fail(
            f"raftlock binary not found at {path}: run `cargo build --release` "
            "or set RAFTLOCK_BIN",
            pytrace=False,
        )
    return path


def _die_with_parent() -> List[str]:
    """A prefix for the node's command line that has it SIGKILLed when
    pytest dies (PR_SET_PDEATHSIG, kept across exec), so an interrupted run
    leaves no servers behind. Not a preexec_fn: Python code run between
    fork and exec can hang on locks gRPC's threads held at the fork."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


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


def meta(error: grpc.RpcError) -> Dict[str, str]:
    """The metadata of a failed call: a trailers-only gRPC error carries it
    in the trailers, so both kinds are merged."""
    pairs = list(error.initial_metadata() or ()) + list(error.trailing_metadata() or ())
    return {k: v for k, v in pairs}


def expect_error(
    call: Callable[[], object], code: grpc.StatusCode, kind: Optional[str]
) -> grpc.RpcError:
    """Runs ``call``, which must fail with ``code``; ``kind`` is the
    ``raftlock-error`` value it must carry (None: it must carry none)."""
    try:
        reply = call()
    except grpc.RpcError as e:
        assert e.code() == code, f"expected {code}, got {e.code()}: {e.details()}"
        assert meta(e).get(ERROR_KIND) == kind, (
            f"{code} {e.details()!r}: expected {ERROR_KIND}={kind!r}, metadata {meta(e)}"
        )
        return e
    raise AssertionError(f"expected {code} ({kind}), got a reply: {reply}")


def wait_until(what: str, check: Callable[[], bool], within: float = 15.0) -> None:
    """Re-reads until ``check`` holds: for state that only a read can
    observe, never as a stand-in for an event a call returns."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(0.02)


def channel(addr: str, credentials: Optional[ClusterCredentials],
            token: Optional[str] = None, node_cert: Optional[int] = None,
            client_cert: Optional[str] = None) -> grpc.Channel:
    """A channel to ``addr``: plain text without ``credentials``; else TLS
    trusting the cluster's CA, presenting node ``node_cert``'s certificate
    (or client ``client_cert``'s) if given, and sending ``token`` as
    ``authorization: Bearer`` on every call if given."""
    if credentials is None:
        return grpc.insecure_channel(addr)
    cert = key = None
    if node_cert is not None:
        cert, key = credentials.issue_node(node_cert)
    elif client_cert is not None:
        cert, key = credentials.issue_client(client_cert)
    tls = grpc.ssl_channel_credentials(
        root_certificates=credentials.ca_pem(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )
    if token is not None:
        tls = grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(token))
    return grpc.secure_channel(addr, tls)


class Node:
    """One server process and a channel to its client port (``addr``) as
    the suite's default principal; ``peer_addr`` is where the other nodes
    reach it, and ``peer_channel`` calls it there as another node would
    (with this node's own certificate)."""

    def __init__(self, node_id: int, addr: str, peer_addr: str,
                 credentials: Optional[ClusterCredentials]) -> None:
        self.id = node_id
        self.addr = addr
        self.peer_addr = peer_addr
        self.credentials = credentials
        self.proc: Optional[subprocess.Popen] = None
        self._channels: List[grpc.Channel] = []
        self.channel = self.channel_as(DEFAULT_PRINCIPAL)
        self.stub = pb_grpc.LockStub(self.channel)
        self._stubs: Dict[str, object] = {DEFAULT_PRINCIPAL: self.stub}
        self.peer_channel = self.open_channel(peer_addr, node_cert=node_id)

    def open_channel(self, addr: str, token: Optional[str] = None,
                     node_cert: Optional[int] = None,
                     client_cert: Optional[str] = None) -> grpc.Channel:
        """A channel (see :func:`channel`), closed with the node's."""
        made = channel(addr, self.credentials, token, node_cert, client_cert)
        self._channels.append(made)
        return made

    def token(self, principal: Optional[str]) -> Optional[str]:
        """``principal``'s token (None: no token, or an insecure cluster)."""
        if self.credentials is None or principal is None:
            return None
        return self.credentials.tokens[principal]

    def channel_as(self, principal: Optional[str], peer: bool = False) -> grpc.Channel:
        """A new channel to the client port (or the peer port) that calls
        as ``principal`` (None: with no token)."""
        return self.open_channel(self.peer_addr if peer else self.addr, self.token(principal))

    def lock_stub(self, principal: str):
        """The Lock service on the client port, called as ``principal``."""
        if principal not in self._stubs:
            self._stubs[principal] = pb_grpc.LockStub(self.channel_as(principal))
        return self._stubs[principal]

    def status(self, timeout: float = 2.0):
        return self.stub.Status(pb.StatusRequest(), timeout=timeout)

    def close(self) -> None:
        for ch in self._channels:
            ch.close()


class Cluster:
    """Three nodes on loopback, each with its own temp data dir, and the
    credentials (``None``: an insecure cluster) in ``<dir>/credentials``."""

    def __init__(self, n: int = 3) -> None:
        self.bin = raftlock_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="raftlock-conformance-"))
        ports = free_ports(2 * n)
        try:
            self.credentials = make_credentials(self.bin, self.dir / "credentials",
                                                range(1, n + 1))
            self.nodes: Dict[int, Node] = {
                i: Node(i, f"127.0.0.1:{ports[i - 1]}", f"127.0.0.1:{ports[n + i - 1]}",
                        self.credentials)
                for i in range(1, n + 1)
            }
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        try:
            for node_id in self.nodes:
                self.start(node_id)
            self.wait_for_leader()
        except BaseException:
            self.stop()
            raise

    def start(self, node_id: int) -> None:
        node = self.nodes[node_id]
        peers = ",".join(f"{n.id}={n.peer_addr}/{n.addr}" for n in self.nodes.values())
        with open(self.dir / f"node{node_id}.log", "ab") as log:
            node.proc = subprocess.Popen(
                [
                    *_die_with_parent(),
                    str(self.bin), "server", "--id", str(node_id),
                    "--listen", node.addr, "--peer-listen", node.peer_addr,
                    "--peers", peers,
                    "--data-dir", str(self.dir / f"node{node_id}"),
                    *server_flags(self.credentials, node_id),
                    *RAFT_TIMING,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={**os.environ, "RUST_LOG": "info,openraft=warn"},
            )

    def kill(self, node_id: int) -> None:
        """SIGKILL, as in a crash."""
        proc = self.nodes[node_id].proc
        if proc is not None:
            proc.kill()
            proc.wait()
            self.nodes[node_id].proc = None

    def terminate(self, node_id: int) -> None:
        """SIGTERM, a graceful stop."""
        proc = self.nodes[node_id].proc
        assert proc is not None
        proc.terminate()
        proc.wait(timeout=30)
        self.nodes[node_id].proc = None

    def running(self) -> Dict[int, Node]:
        return {i: n for i, n in self.nodes.items() if n.proc is not None}

    def wait_for_leader(self, within: float = 30.0) -> Node:
        """Waits until a running node leads and every running node follows
        it in the same term; returns the leader."""
        deadline = time.monotonic() + within
        seen = {}
        while time.monotonic() < deadline:
            seen = {}
            for node in self.running().values():
                try:
                    seen[node.id] = node.status(timeout=1.0)
                except grpc.RpcError:
                    pass
            leaders = [s for s in seen.values() if s.role == pb.ROLE_LEADER]
            if len(seen) == len(self.running()) and len(leaders) == 1:
                lead = leaders[0]
                if all(s.has_leader and s.leader_id == lead.id and s.term == lead.term
                       for s in seen.values()):
                    return self.nodes[lead.id]
            time.sleep(0.05)
        raise AssertionError(f"no settled leader within {within} s: {seen}\n{self.logs()}")

    def leader(self) -> Node:
        return self.wait_for_leader()

    def followers(self) -> Iterator[Node]:
        lead = self.leader()
        return (n for n in self.running().values() if n.id != lead.id)

    def node_at(self, addr: str) -> Node:
        return next(n for n in self.nodes.values() if n.addr == addr)

    def logs(self) -> str:
        text = []
        for node_id in self.nodes:
            path = self.dir / f"node{node_id}.log"
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-20:]
                text.append(f"--- node {node_id} ---\n" + "\n".join(lines))
        return "\n".join(text)

    @property
    def secure(self) -> bool:
        return self.credentials is not None

    def stop(self) -> None:
        for node_id in self.nodes:
            self.kill(node_id)
            self.nodes[node_id].close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Client:
    """Calls leader-only RPCs the way docs/protocol.md tells a client to:
    start at the node that answered last, follow ``raftlock-leader-addr``
    redirects at once with the same request, and on UNAVAILABLE without
    one try another node after a short backoff. It calls as ``principal``
    (on a secured cluster)."""

    def __init__(self, cluster: Cluster, principal: str = DEFAULT_PRINCIPAL) -> None:
        self.cluster = cluster
        self.principal = principal
        self.current = cluster.leader()

    def call(self, method: str, request, timeout: float = RPC_TIMEOUT, metadata=None):
        deadline = time.monotonic() + 30.0
        while True:
            stub_method = getattr(self.current.lock_stub(self.principal), method)
            try:
                return stub_method(request, timeout=timeout, metadata=metadata)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                addr = meta(e).get(LEADER_ADDR)
                if addr is not None:
                    self.current = self.cluster.node_at(addr)
                else:
                    time.sleep(0.1)
                    others = [n for n in self.cluster.running().values() if n is not self.current]
                    self.current = others[0] if others else self.current

    def future(self, method: str, request, timeout: float = RPC_TIMEOUT):
        """Starts a call (a long-poll, say) on the current leader without
        waiting for it: a ``grpc.Future``."""
        stub = self.cluster.leader().lock_stub(self.principal)
        return getattr(stub, method).future(request, timeout=timeout)

    # The calls, spelled as in the proto.
    def open(self, ttl_ms: int = 60_000, lock_delay_ms: int = 0, label: str = "conformance"):
        return self.call(
            "OpenSession",
            pb.OpenSessionRequest(ttl_ms=ttl_ms, lock_delay_ms=lock_delay_ms, label=label),
        )

    def session(self, **kwargs) -> "Session":
        reply = self.open(**kwargs)
        return Session(self, reply.session_id, reply.session_secret)

    def get_lock(self, name: str):
        return self.call("GetLock", pb.GetLockRequest(name=name))

    def holder_of(self, name: str) -> Optional[str]:
        """The session id holding ``name``, or None."""
        reply = self.get_lock(name)
        if reply.HasField("lock") and reply.lock.HasField("holder"):
            return reply.lock.holder.session_id
        return None

    def waiters_of(self, name: str):
        reply = self.get_lock(name)
        return [w.session_id for w in reply.lock.waiters] if reply.HasField("lock") else []

    def wait_until(self, what: str, check: Callable[[], bool], within: float = 15.0) -> None:
        wait_until(what, check, within)


class Session:
    """A session id, its secret (sent on every call that acts as the
    session) and its request numbers: ``next_seq`` starts at 1 and adds one
    per request, as the doc asks."""

    def __init__(self, client: Client, session_id: str, secret: str = "") -> None:
        self.client = client
        self.id = session_id
        self.secret = secret
        self.seq = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def acquire_request(self, name: str, seq: Optional[int] = None, wait_ms: int = 0,
                        leave: bool = False, mode: int = 0, limit: int = 0):
        return pb.AcquireRequest(
            session_id=self.id, seq=self.next_seq() if seq is None else seq, name=name,
            wait_ms=wait_ms, leave_queue_on_timeout=leave, mode=mode, limit=limit,
            session_secret=self.secret,
        )

    def acquire(self, name: str, seq: Optional[int] = None, wait_ms: int = 0,
                leave: bool = False, mode: int = 0, limit: int = 0):
        timeout = RPC_TIMEOUT + min(wait_ms, 15_000) / 1000
        return self.client.call(
            "Acquire", self.acquire_request(name, seq, wait_ms, leave, mode, limit),
            timeout=timeout,
        )

    def acquire_future(self, name: str, wait_ms: int, leave: bool = False,
                       seq: Optional[int] = None, mode: int = 0, limit: int = 0):
        timeout = RPC_TIMEOUT + min(wait_ms, 15_000) / 1000
        return self.client.future(
            "Acquire", self.acquire_request(name, seq, wait_ms, leave, mode, limit),
            timeout=timeout,
        )

    def release(self, name: str, seq: Optional[int] = None):
        return self.client.call(
            "Release",
            pb.ReleaseRequest(session_id=self.id, session_secret=self.secret,
                              seq=self.next_seq() if seq is None else seq, name=name),
        )

    def keep_alive(self):
        return self.client.call(
            "KeepAlive", pb.KeepAliveRequest(session_id=self.id, session_secret=self.secret)
        )

    def close(self, seq: Optional[int] = None):
        return self.client.call(
            "CloseSession",
            pb.CloseSessionRequest(session_id=self.id, session_secret=self.secret,
                                   seq=self.next_seq() if seq is None else seq),
        )
