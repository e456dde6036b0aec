"""The exceptions raftlock raises, all subclasses of :class:`RaftlockError`.

They are defined here (not in Rust) so that they have real constructors,
attributes and docstrings, and survive pickling (``multiprocessing`` sends a
worker's exception back to its parent). The compiled module raises them.
"""

from __future__ import annotations

from typing import Optional


class RaftlockError(Exception):
    """Base class of every raftlock error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self):  # type: ignore[override]
        return (type(self), (self.message,))


class _HolderError(RaftlockError):
    """An error about lock ``name`` that may name its ``holder`` (a label)."""

    def __init__(
        self, message: str, name: Optional[str] = None, holder: Optional[str] = None
    ) -> None:
        super().__init__(message)
        self.name = name
        self.holder = holder

    def __reduce__(self):  # type: ignore[override]
        return (type(self), (self.message, self.name, self.holder))


class LockNotAcquired(_HolderError):
    """The lock was not acquired: a try-lock found it taken, or the wait
    ran out (``timeout``), or the wait was cancelled.

    ``holder`` is the holder's label when the cluster named one.
    """


class NotOwner(_HolderError):
    """``release()`` by someone who does not hold the lock. The message,
    and ``holder`` where known, name the holder's label."""


class NotHeld(NotOwner):
    """``release()`` of a lock that nobody holds (``holder`` is None)."""


class LockLost(RaftlockError):
    """The session that held the lock expired (or could not be kept alive
    for a whole TTL): from some point on the lock may have been someone
    else's. Raised by ``release()`` / ``check()`` and on leaving a ``with``
    block, so a lost lock is never silent."""

    def __init__(
        self, message: str, name: Optional[str] = None, reason: Optional[str] = None
    ) -> None:
        super().__init__(message)
        self.name = name
        self.reason = reason

    def __reduce__(self):  # type: ignore[override]
        return (type(self), (self.message, self.name, self.reason))


class ModeConflict(RaftlockError):
    """The lock ``name`` is in use in another mode: a semaphore asked for
    as a lock (or the reverse), a semaphore with another limit, or this
    process's session already holds or waits for it in another mode. The
    message is the cluster's and says which. A name takes any mode again
    once nobody holds or waits for it."""

    def __init__(self, message: str, name: Optional[str] = None) -> None:
        super().__init__(message)
        self.name = name

    def __reduce__(self):  # type: ignore[override]
        return (type(self), (self.message, self.name))


class ClusterUnavailable(RaftlockError):
    """No node could serve the request within the client's ``retry_for``
    (no quorum, all nodes down or unreachable)."""


class InvalidArgument(RaftlockError, ValueError):
    """A bad argument: empty or too long lock name, TTL out of range, ..."""


class QuotaExceeded(RaftlockError):
    """A quota of the cluster is reached: too many sessions, locks, waiters,
    ... (the message names the quota and the server flag that raises it).
    Not retried: it holds until something is released, closed or expires."""


class NotAuthenticated(RaftlockError):
    """The cluster did not accept this client: no token, or one its auth
    file does not hold. Check ``token_file`` (or ``RAFTLOCK_AUTH_TOKEN_FILE``,
    or the profile's ``token``). Not retried: every node would say the same."""


class PermissionDenied(RaftlockError):
    """The client's principal may not make this call: its role is too low
    (a ``read`` token taking a lock) or the lock name is outside its
    prefixes. The message names the principal, role and call."""


class TlsError(RaftlockError):
    """The TLS handshake with a node failed: its certificate is not from the
    CA given (``ca``), does not name the host dialled, or the node does not
    speak TLS (it runs with ``--insecure``: pass ``insecure=True``)."""


class CredentialsError(RaftlockError):
    """This client's own credentials cannot be used, so nothing was sent: a
    CA file that is missing or not PEM, a token file others can read
    (``chmod 600`` it), a certificate without its key, or ``insecure=True``
    together with credentials."""
