"""HDF5 from many processes: 8 processes append rows to one HDF5 file, each
row under the lock (open, grow the dataset, write, close), then the file is
checked: intact, every row there once, tokens increasing.

The file also keeps the last fencing token that wrote to it, and a writer
refuses to write with an older token: the lock keeps writers apart, the
token catches a writer whose lock was lost while it was paused.

    pip install h5py
    RAFTLOCK_ENDPOINTS=127.0.0.1:7899,127.0.0.1:7900,127.0.0.1:7901 \\
        python examples/h5py_append.py [--file rows.h5]

Exits 0 and prints "OK: ..." if the file is intact, 1 if not, 2 if h5py
is not installed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
from typing import List

try:
    import h5py
    import numpy as np
except ImportError:
    print("this example needs h5py: pip install h5py", file=sys.stderr)
    sys.exit(2)

import raftlock

ROW = np.dtype([("worker", "<i4"), ("seq", "<i4"), ("token", "<u8")])

# Made in the parent; each forked worker gets its own session on first use.
client = raftlock.Client()


def append_rows(worker: int, path: str, rows: int) -> List[int]:
    """Appends ``rows`` rows, each under the lock; returns the tokens."""
    tokens = []
    for seq in range(rows):
        with client.lock(f"hdf5:{os.path.abspath(path)}", timeout=120) as held:
            held.check()  # raises LockLost if the session expired meanwhile
            with h5py.File(path, "a") as f:
                rows_ds = f["rows"]
                last = int(rows_ds.attrs["last_token"])
                if held.token <= last:
                    raise RuntimeError(f"stale fencing token {held.token} <= {last}")
                n = rows_ds.shape[0]
                rows_ds.resize((n + 1,))
                rows_ds[n] = (worker, seq, held.token)
                rows_ds.attrs["last_token"] = held.token
            tokens.append(held.token)
    return tokens


def check(path: str, workers: int, rows: int) -> List[str]:
    with h5py.File(path, "r") as f:
        data = f["rows"][:]
        last = int(f["rows"].attrs["last_token"])
    problems = []
    if len(data) != workers * rows:
        problems.append(f"expected {workers * rows} rows, found {len(data)}")
    pairs = sorted((int(w), int(s)) for w, s, _ in data)
    if pairs != [(w, s) for w in range(workers) for s in range(rows)]:
        problems.append("rows are missing or duplicated")
    tokens = [int(t) for t in data["token"]]
    if tokens != sorted(set(tokens)):
        problems.append("fencing tokens do not increase row by row")
    if tokens and last != tokens[-1]:
        problems.append(f"last_token {last} is not the last row's {tokens[-1]}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", help="the HDF5 file (default: a temp file)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rows", type=int, default=10, help="rows per worker")
    args = parser.parse_args()
    path = args.file or os.path.join(tempfile.mkdtemp(prefix="raftlock-"), "rows.h5")
    with h5py.File(path, "w") as f:
        rows_ds = f.create_dataset("rows", shape=(0,), maxshape=(None,), dtype=ROW, chunks=True)
        rows_ds.attrs["last_token"] = 0
    with multiprocessing.Pool(args.workers) as pool:
        pool.starmap(append_rows, [(w, path, args.rows) for w in range(args.workers)])
    problems = check(path, args.workers, args.rows)
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"OK: {args.workers} processes appended {args.workers * args.rows} rows to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
