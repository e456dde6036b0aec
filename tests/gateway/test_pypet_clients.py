"""pypet's own lock clients (the installed package's LockerClient and
ForkAwareLockerClient, unchanged) against the gateway: a multiprocessing
pool, appends to one HDF5 file from 8 processes, pypet's Environment in
NETLOCK mode, and a holder killed mid-lock."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from pypet.utils.mpwrappers import ForkAwareLockerClient, LockerClient

from gateway_support import Gateway

CLIENTS = [LockerClient, ForkAwareLockerClient]


def guarded_append(args) -> None:
    """A critical section that shows any overlap: enter, pause, leave."""
    lock, path, idx = args
    random.seed(idx)
    lock.acquire()
    try:
        with open(path, "a") as f:
            f.write(f"enter {idx} {os.getpid()}\n")
        time.sleep(random.uniform(0.0, 0.03))
        with open(path, "a") as f:
            f.write(f"leave {idx} {os.getpid()}\n")
    finally:
        lock.release()


def check_sections(path: Path, jobs: int) -> None:
    lines = path.read_text().splitlines()
    assert len(lines) == 2 * jobs, lines
    for enter, leave in zip(lines[::2], lines[1::2]):
        assert enter.startswith("enter ") and leave == "leave" + enter[5:], (enter, leave)
    assert sorted(int(line.split()[1]) for line in lines[::2]) == list(range(jobs))


@pytest.mark.parametrize("client_class", CLIENTS, ids=lambda c: c.__name__)
def test_pypet_clients_in_a_pool(gateway, name, tmp_path, client_class):
    lock = client_class(gateway.url, name)
    if client_class is ForkAwareLockerClient:
        lock.start()  # connected before the fork, as pypet's Environment does
    path = tmp_path / "sections.txt"
    jobs = 32
    with mp.get_context("fork").Pool(8) as pool:
        pool.map(guarded_append, [(lock, path, i) for i in range(jobs)])
    check_sections(path, jobs)
    grants = gateway.grants(name)
    assert len(grants) == jobs
    assert len({client for client, _ in grants}) > 1, "one worker did everything"


def hdf5_appender(args) -> None:
    """Appends rows to one HDF5 file, each under the lock."""
    lock, path, worker, rows = args
    for i in range(rows):
        lock.acquire()
        try:
            with h5py.File(path, "a") as f:
                if "rows" not in f:
                    f.create_dataset("rows", shape=(0, 3), maxshape=(None, 3), dtype="i8")
                data = f["rows"]
                data.resize(data.shape[0] + 1, axis=0)
                data[-1] = (worker, i, os.getpid())
        finally:
            lock.release()


@pytest.mark.parametrize("client_class", CLIENTS, ids=lambda c: c.__name__)
def test_hdf5_appends_from_8_processes(gateway, name, tmp_path, client_class):
    path = tmp_path / "shared.h5"
    lock = client_class(gateway.url, name)
    workers, rows = 8, 15
    procs = [mp.get_context("fork").Process(target=hdf5_appender, args=((lock, path, w, rows),))
             for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    with h5py.File(path, "r") as f:
        data = np.asarray(f["rows"])
    assert data.shape == (workers * rows, 3)
    assert sorted(map(tuple, data[:, :2].tolist())) == [(w, i) for w in range(workers) for i in range(rows)]
    # Each worker's rows are in its own order: no append was lost or redone.
    for w in range(workers):
        assert data[data[:, 0] == w][:, 1].tolist() == list(range(rows))


ENVIRONMENT_SCRIPT = textwrap.dedent("""
    import sys
    from pypet import Environment, cartesian_product

    def square(traj):
        traj.f_add_result("y", traj.x * traj.x)

    url, filename = sys.argv[1], sys.argv[2]
    env = Environment(trajectory="squares", filename=filename, multiproc=True, ncores=4,
                      wrap_mode="NETLOCK", port=url, log_stdout=False, log_config=None)
    traj = env.traj
    traj.f_add_parameter("x", 0)
    traj.f_explore(cartesian_product({"x": list(range(16))}))
    env.run(square)
    env.disable_logging()
    traj.f_load(load_results=2)
    ys = sorted(traj.f_get_from_runs("y", fast_access=True).values())
    assert ys == [x * x for x in range(16)], ys
    print("RESULTS OK")
""")


def test_pypet_environment_netlock_at_the_gateway(gateway, tmp_path):
    """pypet's Environment always starts a LockerServer of its own at its
    URL; with the gateway already listening there that server cannot bind,
    and the Environment's ForkAwareLockerClient talks to the gateway."""
    script = tmp_path / "squares.py"
    script.write_text(ENVIRONMENT_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), gateway.url, str(tmp_path / "squares.hdf5")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0 and "RESULTS OK" in out.stdout, out.stdout + out.stderr
    # The runs' stores went through the gateway: pypet's lock name is _DEFAULT_.
    grants = gateway.grants("_DEFAULT_")
    assert len({client for client, _ in grants}) >= 2, grants
    assert gateway.alive()


HOLDER_SCRIPT = textwrap.dedent("""
    import sys, time
    from pypet.utils.mpwrappers import LockerClient
    lock = LockerClient(sys.argv[1], sys.argv[2])
    lock.acquire()
    print("held", flush=True)
    time.sleep(600)
""")


def test_a_killed_holders_lock_goes_to_the_next_waiter_after_the_client_ttl(
        cluster, name, tmp_path):
    ttl = 3.0
    gateway = Gateway(cluster, client_ttl=ttl)
    try:
        script = tmp_path / "holder.py"
        script.write_text(HOLDER_SCRIPT)
        holder = subprocess.Popen([sys.executable, str(script), gateway.url, name],
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "held"
        last_message = time.monotonic()
        holder.kill()
        holder.wait()
        waiter = LockerClient(gateway.url, name)
        waiter.acquire()
        waited = time.monotonic() - last_message
        waiter.release()
        waiter.finalize()
        # Not before the TTL (the holder might only be slow), and soon after.
        assert ttl - 0.2 <= waited <= ttl + 2.0, f"granted after {waited:.2f} s"
        grants = gateway.grants(name)
        assert len(grants) == 2 and grants[0][0] != waiter.id and grants[1][0] == waiter.id
        assert grants[0][1] < grants[1][1], grants
        print(f"next waiter granted {waited:.2f} s after the holder's last message (TTL {ttl} s)")
    finally:
        gateway.stop()
