""":meth:`Client.watch`: the locks under a prefix, then every change to
them, as an iterator that survives leader changes without missing or
repeating a change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional


@dataclass(frozen=True)
class WatchEvent:
    """One thing a watch tells.

    ``kind`` is ``"reset"`` (forget what you knew: the state at ``index``
    follows; ``resync`` says the watch could not resume where it was),
    ``"synced"`` (the state is complete), or a change: ``"granted"``,
    ``"queued"``, ``"released"``, ``"expired"`` (the holder's session
    expired), ``"left_queue"`` (with ``reason``). Changes with ``state``
    true describe the state after a reset (holders, then waiters);
    otherwise they happened at log ``index``.
    """

    kind: str
    index: int
    name: str = ""
    session_id: str = ""
    mode: str = ""
    limit: int = 0
    token: int = 0
    available_at_ms: int = 0
    reason: Optional[str] = None
    state: bool = False
    resync: bool = False

    @classmethod
    def _from_native(cls, event: Dict[str, Any]) -> "WatchEvent":
        return cls(**event)


class Watch:
    """An iterator of :class:`WatchEvent`: ``for event in client.watch("jobs/"):``.

    Each step waits with the GIL released (Ctrl-C works). ``close()`` (or
    leaving ``with client.watch(...) as watch:``) stops it, from any thread.
    It raises :class:`ClusterUnavailable` if no node answered for the
    client's ``retry_for``. A watch belongs to the process that made it.
    """

    def __init__(self, native: Any) -> None:
        self._native = native

    def __iter__(self) -> Iterator[WatchEvent]:
        return self

    def __next__(self) -> WatchEvent:
        event = self.next()
        if event is None:
            raise StopIteration
        return event

    def next(self, timeout: Optional[float] = None) -> Optional[WatchEvent]:
        """The next event; None if ``timeout`` seconds passed first or the
        watch was closed."""
        event = self._native.next(timeout)
        return WatchEvent._from_native(event) if event is not None else None

    def close(self) -> None:
        self._native.close()

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
