"""The :class:`Client`: where the cluster is, and this process's sessions.

A client opens one session per ``(ttl, lock_delay)`` in each process, when
first needed, and reuses it for every :class:`~raftlock.Lock` it makes; the
session keeps itself alive in the background (the Rust client does that).
After ``os.fork()`` the child sees a different process and opens its own
sessions on its own runtime: it never acts as its parent's session.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Dict, Iterable, List, Optional, Tuple, Union

from . import _native
from ._info import LockInfo
from ._lock import Lock
from ._session import _Session
from ._watch import Watch

DEFAULT_ENDPOINTS: Tuple[str, ...] = ("127.0.0.1:7899", "127.0.0.1:7900", "127.0.0.1:7901")
"""The ``raftlock dev`` cluster, used when neither ``endpoints`` nor
``RAFTLOCK_ENDPOINTS`` say otherwise."""

Endpoints = Union[str, Iterable[str]]
PathLike = Union[str, "os.PathLike[str]"]


def _split(endpoints: Endpoints) -> List[str]:
    parts = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    return [p.strip() for p in parts if p and p.strip()]


def default_endpoints() -> List[str]:
    """``RAFTLOCK_ENDPOINTS`` (comma-separated ``host:port``), else the dev cluster's."""
    env = os.environ.get("RAFTLOCK_ENDPOINTS", "")
    return _split(env) or list(DEFAULT_ENDPOINTS)


class _Process:
    """What a client has in one process: its sessions. Replaced after a fork."""

    def __init__(self) -> None:
        self.token = _native.process_token()
        self.sessions: Dict[Tuple[float, float], _Session] = {}
        self.mutex = threading.Lock()


def _close_sessions(process: _Process, timeout: float = 2.0) -> None:
    """Closes a process's sessions (at exit, or when its client is collected)."""
    if process.token != _native.process_token():
        return  # a forked child: the sessions are the parent's
    with process.mutex:
        sessions = list(process.sessions.values())
        process.sessions.clear()
    for session in sessions:
        for lock in list(session.held.values()):
            lock._forget("the client was closed")
        try:
            session.native.close(timeout)
        except Exception:
            pass  # it expires after its TTL anyway


_CLIENTS: "weakref.WeakSet[Client]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A lock another thread held at the fork would stay locked forever here.
    for client in list(_CLIENTS):
        client._mutex = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _rebuild_client(endpoints: List[str], kwargs: Dict[str, object]) -> "Client":
    return Client(endpoints, **kwargs)  # type: ignore[arg-type]


class Client:
    """A client of a raftlock cluster.

    :param endpoints: the nodes, as ``"host:port,host:port"`` or a list;
        defaults to ``RAFTLOCK_ENDPOINTS``, then ``127.0.0.1:7899,7900,7901``.
        Any node will do: the client follows the leader, skips nodes that do
        not answer, and retries writes safely (request numbers).
    :param label: shown to others as the holder or a waiter (e.g. in
        :class:`NotOwner` messages); defaults to ``"<host> pid <pid>"``.
    :param retry_for: seconds one call keeps retrying an unavailable cluster
        before raising :class:`ClusterUnavailable`.
    :param rpc_timeout: seconds for one attempt at one node.
    :param connect_timeout: seconds to connect to one node.
    :param ca: the cluster's CA certificate (PEM): connect with TLS and
        check the nodes' certificates against it.
    :param token_file: a file holding this client's auth token (it must be
        private to its owner, mode 600); sent as ``authorization: Bearer``
        with every call.
    :param cert: a client certificate (PEM) from the cluster's CA, the
        other way to authenticate; needs ``key``.
    :param key: the client certificate's private key (PEM).
    :param insecure: plain text, no authentication (a cluster run with
        ``--insecure``); nothing else may be given with it.

    With none of ``ca``, ``token_file``, ``cert``, ``key``, ``insecure``,
    the client looks where the ``raftlock`` command does: ``RAFTLOCK_INSECURE``,
    ``RAFTLOCK_CA``, ``RAFTLOCK_AUTH_TOKEN_FILE``, ``RAFTLOCK_CERT`` and
    ``RAFTLOCK_KEY``; then the profile directory ``raftlock dev`` writes
    (``$RAFTLOCK_CONFIG_DIR``, else ``~/.config/raftlock``); else plain
    text. A credential file that cannot be used raises
    :class:`CredentialsError` here; a refused token raises
    :class:`NotAuthenticated`, a refused call :class:`PermissionDenied`, a
    failed handshake :class:`TlsError`, none of them retried.

    Connects lazily: creating a client sends nothing. ``close()`` (or
    leaving ``with Client() as client:``) releases everything this process
    holds through it; so does process exit. A killed process's locks are
    freed when its session expires, ``ttl`` seconds later.

    Safe to share between threads, and to use in a forked child (which gets
    its own sessions). Pickles as its settings, for ``multiprocessing``.
    """

    def __init__(
        self,
        endpoints: Optional[Endpoints] = None,
        *,
        label: Optional[str] = None,
        retry_for: float = 30.0,
        rpc_timeout: float = 5.0,
        connect_timeout: float = 1.0,
        ca: Optional[PathLike] = None,
        token_file: Optional[PathLike] = None,
        cert: Optional[PathLike] = None,
        key: Optional[PathLike] = None,
        insecure: bool = False,
    ) -> None:
        eps = _split(endpoints) if endpoints is not None else default_endpoints()
        paths = {
            name: None if value is None else os.fspath(value)
            for name, value in dict(ca=ca, token_file=token_file, cert=cert, key=key).items()
        }
        self._native = _native.Client(
            eps,
            retry_for,
            rpc_timeout,
            connect_timeout,
            insecure=insecure,
            **paths,
        )
        self._label = label
        # Paths, never the token: a pickled client reads its file again.
        self._settings: Dict[str, object] = dict(
            label=label,
            retry_for=retry_for,
            rpc_timeout=rpc_timeout,
            connect_timeout=connect_timeout,
            insecure=insecure,
            **paths,
        )
        self._mutex = threading.Lock()
        self._process_state: Optional[_Process] = None
        _CLIENTS.add(self)

    @property
    def endpoints(self) -> List[str]:
        """The nodes this client tries, ``host:port`` each."""
        return self._native.endpoints

    def lock(
        self,
        name: str,
        ttl: float = 10,
        timeout: Optional[float] = None,
        blocking: bool = True,
        *,
        lock_delay: float = 0,
        shared: bool = False,
    ) -> Lock:
        """A :class:`Lock` on ``name`` (not yet acquired).

        ``shared=True`` makes it a reader's lock: any number of shared
        holders at once, never together with an exclusive one.

        ``with client.lock("results.h5") as held:`` acquires it and releases
        it after the block; ``held.token`` is the fencing token.

        :param name: any non-empty UTF-8 string up to 512 bytes.
        :param ttl: seconds (1 to 3600) after this process stops keeping its
            session alive (it died, hung, lost the network) that the lock is
            freed. The keepalive runs in the background every ``ttl/3``.
        :param timeout: how long ``acquire()`` waits, in seconds; ``None``
            waits as long as it takes, ``0`` tries once.
        :param blocking: ``False`` makes ``acquire()`` a try-lock.
        :param lock_delay: seconds the lock stays ungrantable after this
            process's session *expires* holding it (never after a release),
            for resources that cannot check fencing tokens.
        """
        return Lock(
            self,
            name,
            ttl=ttl,
            timeout=timeout,
            blocking=blocking,
            lock_delay=lock_delay,
            mode="shared" if shared else "exclusive",
        )

    def semaphore(
        self,
        name: str,
        limit: int,
        ttl: float = 10,
        timeout: Optional[float] = None,
        blocking: bool = True,
        *,
        lock_delay: float = 0,
    ) -> Lock:
        """A :class:`Lock` on one of ``limit`` slots of the semaphore
        ``name`` (not yet acquired): at most ``limit`` holders at once, first
        come, first served. Used like :meth:`lock`
        (``with client.semaphore("gpus", 2) as slot: ... slot.token``).

        :param limit: 1 to 65536. Everyone using ``name`` at the same time
            must give the same limit, else :class:`ModeConflict`.

        The other parameters are :meth:`lock`'s.
        """
        return Lock(
            self,
            name,
            ttl=ttl,
            timeout=timeout,
            blocking=blocking,
            lock_delay=lock_delay,
            mode="semaphore",
            limit=limit,
        )

    def lock_info(self, name: str) -> Optional[LockInfo]:
        """``name``'s holder and waiters (a linearizable read), or None if
        nobody holds or waits for it."""
        info = self._native.get_lock(name)
        return LockInfo._from_native(info) if info is not None else None

    def locks(self, prefix: str = "", limit: int = 0) -> List[LockInfo]:
        """Locks whose names start with ``prefix``, in name order (at most
        ``limit``; 0 means 10 000)."""
        infos, _truncated = self._native.list_locks(prefix, limit)
        return [LockInfo._from_native(i) for i in infos]

    def watch(self, prefix: str = "") -> Watch:
        """Watches the locks whose names start with ``prefix``: their state,
        then every change with its log index (see :class:`Watch`)."""
        return Watch(self._native.watch(prefix))

    def close(self) -> None:
        """Closes this process's sessions: every lock held through this
        client is released at once (its Lock objects stop being held). The
        client stays usable; new sessions open when needed."""
        process = self._process_state
        if process is not None:
            _close_sessions(process, timeout=self._native_retry_for())

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self):  # type: ignore[override]
        return (_rebuild_client, (self.endpoints, self._settings))

    def __repr__(self) -> str:
        return f"raftlock.Client({','.join(self.endpoints)!r})"

    # Internals used by Lock.

    def _native_retry_for(self) -> float:
        return float(self._settings["retry_for"])  # type: ignore[arg-type]

    def _process(self) -> _Process:
        """This process's state; a fresh one after a fork."""
        process = self._process_state
        if process is not None and process.token == _native.process_token():
            return process
        with self._mutex:
            process = self._process_state
            if process is None or process.token != _native.process_token():
                process = _Process()
                self._process_state = process
                # Closes the sessions at exit or when the client goes away.
                weakref.finalize(self, _close_sessions, process)
            return process

    def _session(self, ttl: float, lock_delay: float) -> _Session:
        """This process's live session for ``(ttl, lock_delay)``, opened if
        needed; a lost session is replaced (its Locks stay lost)."""
        process = self._process()
        key = (float(ttl), float(lock_delay))
        with process.mutex:
            session = process.sessions.get(key)
            if session is None or session.lost_reason() is not None:
                native = self._native.open_session(key[0], key[1], self._label)
                session = _Session(native)
                process.sessions[key] = session
            return session

    def _own_session_ids(self) -> List[str]:
        process = self._process_state
        if process is None or process.token != _native.process_token():
            return []
        with process.mutex:
            return [s.native.id for s in process.sessions.values()]
