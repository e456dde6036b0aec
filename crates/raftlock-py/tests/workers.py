"""Code that the tests run in other processes (multiprocessing workers):
critical sections that would show any overlap in a shared log file."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List, Optional

import raftlock

#: Set by a test before it forks a pool: the workers use the parent's client.
CLIENT: Optional[raftlock.Client] = None


def critical_sections(
    client: Optional[raftlock.Client], name: str, directory: str, rounds: int
) -> List[int]:
    """``rounds`` times: under the lock, log start, bump a counter file
    non-atomically (read, sleep, write), log end. Returns the tokens."""
    client = client or CLIENT
    assert client is not None
    counter = Path(directory) / "counter"
    log_path = Path(directory) / "log"
    tokens = []
    for _ in range(rounds):
        with client.lock(name, timeout=120) as held:
            with open(log_path, "a") as log:
                log.write(f"start {os.getpid()} {held.token}\n")
                log.flush()
                value = int(counter.read_text())
                time.sleep(0.02)
                counter.write_text(str(value + 1))
                log.write(f"end {os.getpid()} {held.token}\n")
            tokens.append(held.token)
    return tokens


def check_log(directory: str, expected: int) -> None:
    """Every critical section was whole and alone, and tokens rose in order."""
    assert int((Path(directory) / "counter").read_text()) == expected
    lines = (Path(directory) / "log").read_text().splitlines()
    assert len(lines) == 2 * expected
    tokens = []
    for start, end in zip(lines[::2], lines[1::2]):
        kind, pid, token = start.split()
        assert kind == "start", lines
        assert end == f"end {pid} {token}", f"critical sections overlapped:\n{lines}"
        tokens.append(int(token))
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens), tokens
