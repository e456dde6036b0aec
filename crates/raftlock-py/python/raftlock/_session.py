"""What a :class:`~raftlock.Lock` holds through: this process's session
(:class:`_Session`), and what a Lock needs of the client that made it
(:class:`_SessionSource`).

The client module makes Locks and the lock module uses sessions; both
import this module, which imports neither, so neither imports the other
back.
"""

from __future__ import annotations

import threading
import weakref
from typing import Dict, List, Optional, Protocol

from . import _native
from ._info import LockInfo


class _Holding(Protocol):
    """A Lock as its session sees it: something to tell when it stops holding."""

    def _forget(self, lost: Optional[str]) -> None: ...


class _Session:
    """One native session, the Locks of this process that hold through it,
    and a gate per lock name so that two Lock objects of this process (two
    threads) exclude each other too, although the server sees one owner."""

    def __init__(self, native: "_native.Session") -> None:
        self.native = native
        self.held: Dict[str, _Holding] = {}
        self._gates: "weakref.WeakValueDictionary[str, threading.Lock]" = (
            weakref.WeakValueDictionary()
        )
        self._mutex = threading.Lock()

    def gate(self, name: str) -> threading.Lock:
        with self._mutex:
            gate = self._gates.get(name)
            if gate is None:
                gate = threading.Lock()
                self._gates[name] = gate
            return gate

    def lost_reason(self) -> Optional[str]:
        return self.native.lost_reason()


class _SessionSource(Protocol):
    """What a Lock needs of its :class:`~raftlock.Client`."""

    def _session(self, ttl: float, lock_delay: float) -> _Session:
        """This process's live session for ``(ttl, lock_delay)``."""
        ...

    def _own_session_ids(self) -> List[str]:
        """The ids of this process's sessions."""
        ...

    def lock_info(self, name: str) -> Optional[LockInfo]: ...
