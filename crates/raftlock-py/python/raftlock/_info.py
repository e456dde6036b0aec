"""Read-only views of the lock table: :class:`LockInfo`, :class:`Holder`,
:class:`Waiter`, as returned by ``Client.lock_info()`` and ``Client.locks()``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple


@dataclass(frozen=True)
class Holder:
    """The session holding a lock."""

    session_id: str
    """The holder's session id (32 hex digits)."""
    label: str
    """The holder's label, by default ``"<host> pid <pid>"``."""
    token: int
    """The fencing token of the grant (strictly increasing per lock name)."""
    since_ms: int
    """When it was granted, in ms since the epoch (the cluster's clock)."""


@dataclass(frozen=True)
class Waiter:
    """A session queued for a lock."""

    session_id: str
    label: str


@dataclass(frozen=True)
class LockInfo:
    """One lock: its holder (if any) and its waiters in queue order."""

    name: str
    holder: Optional[Holder]
    waiters: Tuple[Waiter, ...]
    available_at_ms: int
    """End of a lock-delay in force (ms since the epoch), else 0."""

    @classmethod
    def _from_native(cls, d: Dict[str, Any]) -> "LockInfo":
        holder = d["holder"]
        return cls(
            name=d["name"],
            holder=Holder(**holder) if holder is not None else None,
            waiters=tuple(Waiter(**w) for w in d["waiters"]),
            available_at_ms=d["available_at_ms"],
        )
