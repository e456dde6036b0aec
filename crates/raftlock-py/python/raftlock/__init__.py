"""raftlock: a replicated lock service with fencing tokens, from Python.

>>> import raftlock
>>> client = raftlock.Client()                  # RAFTLOCK_ENDPOINTS or the dev cluster
>>> with client.lock("results.h5") as held:     # waits its turn, first come first served
...     write_results(fencing_token=held.token)
>>> with client.lock("results.h5", shared=True):  # with other readers, never a writer
...     read_results()
>>> with client.semaphore("gpus", 2):             # at most 2 holders at once
...     train()

The client is the Rust client (``raftlock-client``) underneath: it follows
the leader, retries safely, and keeps the session alive in the background.
See the package README for the API, the errors and fork behaviour.
"""

from ._client import DEFAULT_ENDPOINTS, Client, default_endpoints
from ._errors import (
    ClusterUnavailable,
    CredentialsError,
    InvalidArgument,
    LockLost,
    LockNotAcquired,
    ModeConflict,
    NotAuthenticated,
    NotHeld,
    NotOwner,
    PermissionDenied,
    QuotaExceeded,
    RaftlockError,
    TlsError,
)
from ._info import Holder, LockInfo, Waiter
from ._lock import Lock
from ._watch import Watch, WatchEvent

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ENDPOINTS",
    "Client",
    "ClusterUnavailable",
    "CredentialsError",
    "Holder",
    "InvalidArgument",
    "Lock",
    "LockInfo",
    "LockLost",
    "LockNotAcquired",
    "ModeConflict",
    "NotAuthenticated",
    "NotHeld",
    "NotOwner",
    "PermissionDenied",
    "QuotaExceeded",
    "RaftlockError",
    "TlsError",
    "Watch",
    "WatchEvent",
    "Waiter",
    "default_endpoints",
]
