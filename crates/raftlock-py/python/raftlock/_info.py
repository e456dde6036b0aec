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
    mode: str = "exclusive"
    """``"exclusive"``, ``"shared"`` or ``"semaphore"``."""


@dataclass(frozen=True)
class Waiter:
    """A session queued for a lock."""

    session_id: str
    label: str
    mode: str = "exclusive"
    """The mode it waits for: ``"exclusive"``, ``"shared"`` or ``"semaphore"``."""


@dataclass(frozen=True)
class LockInfo:
    """One lock: its holders and its waiters in queue order."""

    name: str
    holder: Optional[Holder]
    """The first of ``holders`` (the only one of an exclusive lock), or None."""
    waiters: Tuple[Waiter, ...]
    available_at_ms: int
    """End of a lock-delay in force (ms since the epoch), else 0."""
    holders: Tuple[Holder, ...] = ()
    """Every holder in grant order: several readers, or a semaphore's holders."""
    limit: int = 0
    """A semaphore's limit; 0 for a lock."""

    @classmethod
    def _from_native(cls, d: Dict[str, Any]) -> "LockInfo":
        holders = tuple(Holder(**h) for h in d["holders"])
        return cls(
            name=d["name"],
            holder=holders[0] if holders else None,
            waiters=tuple(Waiter(**w) for w in d["waiters"]),
            available_at_ms=d["available_at_ms"],
            holders=holders,
            limit=d["limit"],
        )
