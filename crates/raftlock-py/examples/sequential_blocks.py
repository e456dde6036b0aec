"""The original lock-server test, with raftlock: a pool of 8 processes runs
16 jobs (``sequential_job.py``), each writing its "This is a sequential
block by N" lines into one shared file under the same lock. Afterwards the
file must hold every block whole, in order, never interleaved.

    RAFTLOCK_ENDPOINTS=127.0.0.1:7899,127.0.0.1:7900,127.0.0.1:7901 \\
        python examples/sequential_blocks.py [--file results.txt]

Exits 0 and prints "OK: ..." if the file is intact, 1 otherwise.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
from typing import List

from sequential_job import LINES, write_block

PREFIX = "This is a sequential block by "


def check(path: str, jobs: int) -> List[str]:
    """Problems with the file: missing lines, torn or interleaved blocks."""
    with open(path) as f:
        lines = f.read().splitlines()
    if len(lines) != jobs * LINES:
        return [f"expected {jobs * LINES} lines, found {len(lines)}"]
    problems, seen = [], set()
    for start in range(0, len(lines), LINES):
        block = lines[start : start + LINES]
        owner = block[0][len(PREFIX) :].split(" ")[0] if block[0].startswith(PREFIX) else "?"
        expected = [f"{PREFIX}{owner} (line {i})" for i in range(1, LINES + 1)]
        if block != expected:
            problems.append(f"block at line {start + 1} is torn or interleaved: {block}")
        if owner in seen:
            problems.append(f"job {owner} wrote twice")
        seen.add(owner)
    if seen != {str(n) for n in range(jobs)}:
        problems.append(f"jobs missing: {sorted({str(n) for n in range(jobs)} - seen)}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", help="the shared file (default: a temp file)")
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--processes", type=int, default=8)
    args = parser.parse_args()
    path = args.file or os.path.join(tempfile.mkdtemp(prefix="raftlock-"), "results.txt")
    if os.path.exists(path):
        os.remove(path)
    with multiprocessing.Pool(args.processes) as pool:
        tokens = pool.starmap(write_block, [(n, path) for n in range(args.jobs)])
    problems = check(path, args.jobs)
    if len(set(tokens)) != len(tokens):
        problems.append(f"fencing tokens repeat: {tokens}")
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(
        f"OK: {args.jobs} jobs in {args.processes} processes wrote {args.jobs} whole blocks "
        f"to {path}; fencing tokens {min(tokens)}..{max(tokens)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
