"""The gateway's credentials against the secured cluster: a token the
cluster never issued stops the gateway at start (exit 77, the token not
shown), and a gateway whose principal may only read serves, answering each
lock request with the refusal that names the principal. Only on a secured
cluster (skipped with RAFTLOCK_TEST_INSECURE=1)."""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from cluster_credentials import clean_env
from gateway_support import Gateway, free_port
from support import raftlock_bin


@pytest.fixture(autouse=True)
def _secured(cluster):
    if not cluster.secure:
        pytest.skip("the cluster runs insecure (RAFTLOCK_TEST_INSECURE=1)")


def test_a_token_the_cluster_never_issued_stops_the_gateway_at_start(cluster, tmp_path):
    token = "rlt_" + secrets.token_urlsafe(32)
    token_file = tmp_path / "stranger.token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    endpoints = ",".join(n.addr for n in cluster.nodes.values())
    done = subprocess.run(
        [str(raftlock_bin()), "gateway", "--zmq", f"tcp://127.0.0.1:{free_port()}",
         "--endpoints", endpoints, "--ca", str(cluster.credentials.ca_file),
         "--auth-token-file", str(token_file)],
        capture_output=True, text=True, timeout=60, env=clean_env(), stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 77, (done.returncode, done.stderr)
    assert "token" in done.stderr, done.stderr
    assert token not in done.stderr + done.stdout


def test_a_read_only_gateway_serves_and_passes_on_the_refusal(cluster, name):
    gateway = Gateway(cluster, principal="reader")
    try:
        refusal = ('permission denied: principal "reader" (role read) may not call '
                   "OpenSession: it needs role lock")
        assert gateway.request(f"LOCK:{name}:a__1") == (
            f"MSG_ERROR:Lock `{name}` refused: {refusal}")
        assert gateway.request(f"LOCK:::{name}:::a__1:::1.5") == (
            f"LOCK_ERROR:::Lock `{name}` refused: {refusal}")
        assert gateway.alive()
        assert gateway.locks(name) == []
    finally:
        gateway.stop()
