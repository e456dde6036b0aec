"""One job of the sequential-blocks example (the other file is
``sequential_blocks.py``, which runs 16 of these in a pool of 8 processes).

Under the lock, the job appends its block of lines to the shared file one
line at a time, with short sleeps, as the original lock-server test did;
without the lock the blocks of concurrent jobs would interleave.
"""

from __future__ import annotations

import os
import time

import raftlock

LINES = 5

# Made once, at import, in the parent: every forked pool worker that uses
# it gets its own session and tokio runtime (a child never acts as its
# parent's session). Endpoints come from RAFTLOCK_ENDPOINTS.
client = raftlock.Client()


def write_block(n: int, path: str) -> int:
    """Writes job ``n``'s block to ``path`` under the lock; returns the
    fencing token it held."""
    with client.lock(f"file:{os.path.abspath(path)}", timeout=120) as held:
        with open(path, "a") as out:
            for line in range(1, LINES + 1):
                out.write(f"This is a sequential block by {n} (line {line})\n")
                out.flush()
                time.sleep(0.02)
        return held.token
