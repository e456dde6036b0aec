"""The :class:`Lock`: one named lock of the cluster, held by this process.

Works like ``threading.Lock`` (``acquire()``, ``release()``, ``with``), but
across processes and hosts, with a fencing token, and with errors instead
of ``False`` when it cannot be had. Not reentrant, like ``threading.Lock``.
Held exclusively, shared with other readers, or as one of a semaphore's
holders (``mode``).
"""

from __future__ import annotations

import asyncio
import functools
import numbers
import os
import threading
import time
from typing import Any, Dict, Optional, Tuple

from . import _native
from ._errors import InvalidArgument, LockLost, LockNotAcquired, NotHeld, NotOwner
from ._session import _Session, _SessionSource

#: How often a cancellable wait for another thread's hold looks at its token.
_POLL = 0.1
#: Timeouts this long (``float("inf")`` included) mean "wait for ever".
_FOREVER = 1e9


#: What the cluster accepts, in seconds (raftlock_core's MIN_TTL_MS,
#: MAX_TTL_MS and MAX_LOCK_DELAY_MS); the `raftlock lock` CLI says the same.
_TTL_RANGE = (1, 3600)
_LOCK_DELAY_RANGE = (0, 60)
#: A semaphore's limit (raftlock_core's MAX_SEMAPHORE_LIMIT).
_LIMIT_RANGE = (1, 65536)
_MODES = ("exclusive", "shared", "semaphore")


def _check_mode(mode: str, limit: Optional[int]) -> None:
    """Refuses a mode or limit the cluster would, before any network call."""
    if mode not in _MODES:
        raise InvalidArgument(f"mode must be one of {', '.join(_MODES)}, not {mode!r}")
    if mode != "semaphore":
        if limit is not None:
            raise InvalidArgument(f"only a semaphore takes a limit, not a {mode} lock")
        return
    low, high = _LIMIT_RANGE
    if (
        not isinstance(limit, numbers.Integral)
        or isinstance(limit, bool)
        or not low <= limit <= high
    ):
        raise InvalidArgument(f"a semaphore's limit must be {low} to {high}, not {limit!r}")


def _check_seconds(what: str, value: float, allowed: Tuple[int, int]) -> None:
    """Refuses ``value`` before any network call, in the caller's unit."""
    low, high = allowed
    ms = None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            ms = round(float(value) * 1000)
        except (ValueError, OverflowError):  # nan, inf
            pass
    if ms is None or not low * 1000 <= ms <= high * 1000:
        raise InvalidArgument(f"{what} must be {low} to {high} seconds, not {value!r}")


def _check_wait(blocking: bool, timeout: Optional[float]) -> None:
    if not blocking and timeout is not None:
        raise ValueError("can't specify a timeout for a non-blocking call")
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"timeout must be None or >= 0 seconds, not {timeout!r}")


def _rebuild_lock(client: _SessionSource, name: str, kwargs: Dict[str, Any]) -> "Lock":
    return Lock(client, name, **kwargs)


class Lock:
    """A named lock; make one with :meth:`Client.lock`.

    ``with client.lock("results.h5") as held:`` waits for the lock (first
    come, first served; the grant is pushed, nobody polls), runs the block,
    then releases it. While waiting, the GIL is released: other threads run.

    Attributes while held: :attr:`token` (fencing token), :attr:`lost`
    (the session expired: the lock may be someone else's now).

    ``mode`` is ``"exclusive"`` (the only holder), ``"shared"`` (with any
    number of other shared holders, never with an exclusive one) or
    ``"semaphore"`` (one of at most ``limit`` holders); see
    :meth:`Client.lock` and :meth:`Client.semaphore`.

    Errors: :class:`LockNotAcquired` (try-lock or timeout),
    :class:`ModeConflict` (the name is in use in another mode or limit),
    :class:`NotOwner` (release without holding; names the holder),
    :class:`LockLost` (on release, or leaving ``with``, if the lock was lost
    while held), :class:`ClusterUnavailable`.

    In a process forked while this Lock was held, it is *not* held: the
    child has its own session, and acquires the lock anew if it wants it.
    """

    def __init__(
        self,
        client: _SessionSource,
        name: str,
        *,
        ttl: float = 10,
        timeout: Optional[float] = None,
        blocking: bool = True,
        lock_delay: float = 0,
        mode: str = "exclusive",
        limit: Optional[int] = None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"lock name must be a str, not {type(name).__name__}")
        _check_mode(mode, limit)
        _check_wait(blocking, timeout)
        _check_seconds("ttl", ttl, _TTL_RANGE)
        _check_seconds("lock_delay", lock_delay, _LOCK_DELAY_RANGE)
        self.client = client
        self.name = name
        self.ttl = ttl
        self.timeout = timeout
        self.blocking = blocking
        self.lock_delay = lock_delay
        self.mode = mode
        self.limit = limit
        self._session: Optional[_Session] = None
        self._gate: Optional[threading.Lock] = None
        self._process: Optional[int] = None
        self._pid: Optional[int] = None
        self._token: Optional[int] = None
        self._lost_reason: Optional[str] = None

    # State.

    def locked(self) -> bool:
        """True while this Lock object holds the lock in this process."""
        return self._session is not None and self._process == _native.process_token()

    @property
    def token(self) -> Optional[int]:
        """The fencing token while held (else None): the Raft log index of
        the grant, strictly increasing for this name. Hand it to anything
        that can refuse writes carrying an older token."""
        return self._token if self.locked() else None

    @property
    def lost_reason(self) -> Optional[str]:
        """Why the lock was lost while held (None if it was not)."""
        session = self._session
        if session is not None and self.locked():
            return session.lost_reason()
        return self._lost_reason

    @property
    def lost(self) -> bool:
        """True if the session expired (or went a whole TTL without a
        confirmed keepalive) while this lock was held: from then on another
        process may hold it. Stays True after release until the next acquire."""
        return self.lost_reason is not None

    @property
    def session_id(self) -> Optional[str]:
        """The id of the session that holds the lock, while held."""
        return self._session.native.id if self._session is not None and self.locked() else None

    @property
    def label(self) -> Optional[str]:
        """The label others see as the holder, while held."""
        return self._session.native.label if self._session is not None and self.locked() else None

    def check(self) -> None:
        """Raises :class:`LockLost` if the lock was lost, :class:`NotHeld`
        if this Lock does not hold it. Call it before writing."""
        reason = self.lost_reason
        if reason is not None:
            raise LockLost(f"lock {self.name!r} was lost: {reason}", self.name, reason)
        if not self.locked():
            raise NotHeld(f"lock {self.name!r} is not held by this Lock", self.name, None)

    # Acquire and release.

    def acquire(self, blocking: Optional[bool] = None, timeout: Optional[float] = None) -> int:
        """Waits for the lock and returns its fencing token.

        Without arguments, uses the ``blocking`` / ``timeout`` given to
        :meth:`Client.lock`. ``blocking=False`` tries once; ``timeout``
        waits that many seconds (``float("inf")`` for ever). Raises
        :class:`LockNotAcquired` if the lock cannot be had, with the
        holder's label; Ctrl-C leaves the queue and raises KeyboardInterrupt.
        """
        return self._acquire(blocking, timeout, None)

    def _acquire(
        self,
        blocking: Optional[bool],
        timeout: Optional[float],
        cancel: Optional["_native.CancelToken"],
    ) -> int:
        if blocking is None:
            blocking = self.blocking
        if timeout is None and blocking and self.blocking:
            timeout = self.timeout
        _check_wait(blocking, timeout)
        if timeout is not None and timeout >= _FOREVER:
            timeout = None
        deadline = None if timeout is None else time.monotonic() + timeout
        # A session lost while we waited for another thread's hold is
        # replaced once: this Lock never held anything through it.
        for attempt in range(2):
            session = self.client._session(self.ttl, self.lock_delay)
            gate = session.gate(self.name)
            if not self._enter_gate(gate, blocking, deadline, cancel):
                raise LockNotAcquired(
                    f"lock {self.name!r} not acquired: held by another Lock object "
                    f"of this process ({session.native.label!r})",
                    self.name,
                    session.native.label,
                )
            try:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                token, _reentrant = session.native.lock(
                    self.name,
                    left if blocking else None,
                    blocking,
                    cancel,
                    self.mode,
                    self.limit or 0,
                )
            except LockLost:
                gate.release()
                if attempt == 0:
                    continue
                raise
            except BaseException:
                gate.release()
                raise
            self._session, self._gate, self._token = session, gate, token
            self._process, self._pid = _native.process_token(), os.getpid()
            self._lost_reason = None
            session.held[self.name] = self
            return token
        raise AssertionError("unreachable")

    @staticmethod
    def _enter_gate(
        gate: threading.Lock,
        blocking: bool,
        deadline: Optional[float],
        cancel: Optional["_native.CancelToken"],
    ) -> bool:
        if not blocking:
            return gate.acquire(False)
        if cancel is None:
            if deadline is None:
                return gate.acquire()
            return gate.acquire(timeout=max(0.0, deadline - time.monotonic()))
        while not cancel.cancelled:
            step = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
            if gate.acquire(timeout=max(0.0, step)):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return False

    def release(self) -> None:
        """Releases the lock.

        Raises :class:`NotOwner` (naming the holder) or :class:`NotHeld` if
        this Lock does not hold it; :class:`LockLost` if it was lost while
        held (it is released as far as it still can be);
        :class:`ClusterUnavailable` if no node answered, in which case the
        lock is still held and ``release()`` may be tried again.
        """
        session = self._session
        if session is None or not self.locked():
            self._raise_not_owner()
            return
        lost: Optional[str] = None
        try:
            session.native.release(self.name)
        except LockLost as e:
            lost = e.reason or e.message
        except NotOwner:
            # Not ours any more (an earlier attempt that reported failure
            # did apply): released all the same.
            pass
        except Exception:
            if session.lost_reason() is None:
                raise  # still held; the caller may retry
        lost = lost or session.lost_reason()
        self._forget(lost)
        if lost is not None:
            raise LockLost(
                f"lock {self.name!r} was lost while held: {lost}", self.name, lost
            )

    def _forget(self, lost: Optional[str]) -> None:
        """Stops holding (after release, loss or client close)."""
        session, gate = self._session, self._gate
        self._session = self._gate = self._token = None
        self._process = self._pid = None
        self._lost_reason = lost
        if session is not None and session.held.get(self.name) is self:
            del session.held[self.name]
        if gate is not None:
            gate.release()

    def _raise_not_owner(self) -> None:
        if self._session is not None and self._process != _native.process_token():
            label = self._session.native.label
            raise NotOwner(
                f"lock {self.name!r} was acquired by process {self._pid} ({label!r}); "
                f"a forked child (pid {os.getpid()}) does not hold its parent's locks",
                self.name,
                label,
            )
        info = self.client.lock_info(self.name)
        holders = info.holders if info is not None else ()
        if not holders:
            raise NotHeld(f"lock {self.name!r} is not held by anyone", self.name, None)
        own = self.client._own_session_ids()
        holder = next((h for h in holders if h.session_id in own), holders[0])
        if holder.session_id in own:
            raise NotOwner(
                f"lock {self.name!r} is held by another Lock object of this process "
                f"({holder.label!r}), not by this one",
                self.name,
                holder.label,
            )
        raise NotOwner(
            f"lock {self.name!r} is held by {holder.label!r} "
            f"(session {holder.session_id}), not by the caller",
            self.name,
            holder.label,
        )

    # Context managers.

    def __enter__(self) -> "Lock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        # Released manually, or acquired by the parent of this forked
        # process: nothing of ours to release.
        if self.locked():
            self.release()

    # asyncio: the wait runs on the default executor; cancelling the task
    # cancels the wait (and gives back a grant that raced the cancel).

    async def acquire_async(
        self, blocking: Optional[bool] = None, timeout: Optional[float] = None
    ) -> int:
        """:meth:`acquire` for asyncio code: awaits the lock without
        blocking the event loop. Cancelling the awaiting task leaves the
        queue."""
        loop = asyncio.get_running_loop()
        cancel = _native.CancelToken()
        wait = loop.run_in_executor(
            None, functools.partial(self._acquire, blocking, timeout, cancel)
        )
        try:
            return await asyncio.shield(wait)
        except asyncio.CancelledError:
            cancel.cancel()
            try:
                await wait
            except BaseException:
                pass
            else:  # granted just before the cancel landed: give it back
                try:
                    await loop.run_in_executor(None, self.release)
                except Exception:
                    pass
            raise

    async def release_async(self) -> None:
        """:meth:`release` for asyncio code."""
        await asyncio.get_running_loop().run_in_executor(None, self.release)

    async def __aenter__(self) -> "Lock":
        await self.acquire_async()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.locked():
            await self.release_async()

    def __reduce__(self):  # type: ignore[override]
        kwargs = dict(
            ttl=self.ttl,
            timeout=self.timeout,
            blocking=self.blocking,
            lock_delay=self.lock_delay,
            mode=self.mode,
            limit=self.limit,
        )
        return (_rebuild_lock, (self.client, self.name, kwargs))

    def __repr__(self) -> str:
        state = f"held, token={self._token}" if self.locked() else "not held"
        if self.lost:
            state += ", lost"
        if self.mode == "shared":
            state = f"shared, {state}"
        elif self.mode == "semaphore":
            state = f"semaphore of {self.limit}, {state}"
        return f"<raftlock.Lock {self.name!r} {state}>"
