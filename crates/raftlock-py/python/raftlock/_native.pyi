"""Type stub of ``raftlock._native``, the compiled bindings over the Rust
client (``src/*.rs``). Use the public API in ``raftlock`` instead."""

from typing import Any, Dict, List, Optional, Tuple

def process_token() -> int:
    """A number identifying this process that changes in a forked child."""

class CancelToken:
    """A flag another thread sets to end a ``Session.lock`` wait."""

    def __init__(self) -> None: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

class Session:
    """A session of this process; refuses to work in a forked child."""

    @property
    def id(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def ttl(self) -> float: ...
    @property
    def owner_pid(self) -> int: ...
    def is_current(self) -> bool: ...
    def lost_reason(self) -> Optional[str]: ...
    def holds(self, name: str) -> bool: ...
    def lock(
        self,
        name: str,
        timeout: Optional[float] = None,
        blocking: bool = True,
        cancel: Optional[CancelToken] = None,
        mode: str = "exclusive",
        limit: int = 0,
    ) -> Tuple[int, bool]:
        """Returns ``(fencing_token, reentrant)``."""
    def release(self, name: str) -> None: ...
    def close(self, timeout: float = 5.0) -> List[str]: ...
    def wait_lost(self, timeout: Optional[float] = None) -> Optional[str]: ...

class Client:
    """The Rust client for this process (a forked child gets a new one)."""

    def __init__(
        self,
        endpoints: List[str],
        retry_for: float = 30.0,
        rpc_timeout: float = 5.0,
        connect_timeout: float = 1.0,
        ca: Optional[str] = None,
        token_file: Optional[str] = None,
        cert: Optional[str] = None,
        key: Optional[str] = None,
        insecure: bool = False,
    ) -> None: ...
    @property
    def endpoints(self) -> List[str]: ...
    def open_session(
        self, ttl: float = 10.0, lock_delay: float = 0.0, label: Optional[str] = None
    ) -> Session: ...
    def get_lock(self, name: str) -> Optional[Dict[str, Any]]: ...
    def list_locks(
        self, prefix: str = "", limit: int = 0
    ) -> Tuple[List[Dict[str, Any]], bool]: ...
    def list_locks_page(
        self, prefix: str = "", page_size: int = 0, page_token: Optional[str] = None
    ) -> Tuple[List[Dict[str, Any]], Optional[str]]: ...
    def node_status(self, addr: str, timeout: float = 1.0) -> Dict[str, Any]: ...
    def watch(self, prefix: str = "") -> Watch: ...

class Watch:
    def next(self, timeout: Optional[float] = None) -> Optional[Dict[str, Any]]: ...
    def close(self) -> None: ...
