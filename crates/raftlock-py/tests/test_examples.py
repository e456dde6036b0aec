"""The package's examples, run as a user would (``python examples/...``)
against the test cluster: the 16-job sequential-blocks scenario and the
h5py writers. Each example verifies its own output; the test checks the
sequential file again independently."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(cluster, script: str, *args: str) -> subprocess.CompletedProcess:
    # The examples make `raftlock.Client()`: endpoints and credentials
    # come from the environment, as a user would give them.
    env = cluster.client_env()
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        env=env, capture_output=True, text=True, timeout=300,
    )


def test_sixteen_jobs_in_a_pool_of_eight_never_interleave(cluster, tmp_path):
    path = tmp_path / "results.txt"
    done = run_example(cluster, "sequential_blocks.py", "--file", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("OK: 16 jobs in 8 processes"), done.stdout
    lines = path.read_text().splitlines()
    assert len(lines) == 16 * 5
    owners = []
    for start in range(0, len(lines), 5):
        owner = lines[start].split()[6]
        assert lines[start : start + 5] == [
            f"This is a sequential block by {owner} (line {i})" for i in range(1, 6)
        ]
        owners.append(owner)
    assert sorted(owners, key=int) == [str(n) for n in range(16)]


def test_h5py_writers_append_every_row_intact(cluster, tmp_path):
    pytest.importorskip("h5py", reason="h5py is not installed")
    path = tmp_path / "rows.h5"
    done = run_example(cluster, "h5py_append.py", "--file", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("OK: 8 processes appended 80 rows"), done.stdout
