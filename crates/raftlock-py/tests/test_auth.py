"""What the secured test cluster's principals may do through the Python
client: a read principal reads and is refused a lock (``PermissionDenied``
naming it), a token the cluster never issued is ``NotAuthenticated`` at
once (not retried for ``retry_for``), a plain-text client does not reach a
TLS node, and two lock principals each hold their own locks. Only on a
secured cluster (skipped with RAFTLOCK_TEST_INSECURE=1)."""

from __future__ import annotations

import os
import secrets
import time

import pytest

import raftlock


@pytest.fixture(autouse=True)
def _secured(cluster):
    if cluster.credentials is None:
        pytest.skip("the cluster runs insecure (RAFTLOCK_TEST_INSECURE=1)")


def test_a_read_principal_reads_and_may_not_lock(cluster, client, name):
    with client.lock(name):
        reader = cluster.client(label="pytest reader", principal="reader")
        info = reader.lock_info(name)
        assert info is not None and info.holder.label == "pytest main"
        assert [i.name for i in reader.locks(prefix=name)] == [name]
        with pytest.raises(raftlock.PermissionDenied) as refused:
            reader.lock(name + "/mine", blocking=False).acquire()
        assert 'principal "reader" (role read)' in str(refused.value), str(refused.value)
        reader.close()


def test_a_token_the_cluster_never_issued_is_not_authenticated_at_once(cluster, tmp_path, name):
    token_file = tmp_path / "stranger.token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
    token = "rlt_" + secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    stranger = raftlock.Client(cluster.endpoints, ca=cluster.credentials.ca_file,
                               token_file=token_file, retry_for=30.0)
    started = time.monotonic()
    with pytest.raises(raftlock.NotAuthenticated) as refused:
        stranger.lock_info(name)
    assert time.monotonic() - started < 5.0, "retried instead of failing at once"
    assert token not in str(refused.value)


def test_a_plain_text_client_does_not_reach_a_tls_node(cluster, name):
    plain = raftlock.Client(cluster.endpoints, insecure=True, retry_for=2.0)
    with pytest.raises(raftlock.RaftlockError):
        plain.lock_info(name)


def test_two_lock_principals_hold_their_own_locks(cluster, client, name):
    bob = cluster.client(label="pytest bob", principal="bob")
    with client.lock(name) as mine:
        first = mine.token
        with pytest.raises(raftlock.LockNotAcquired) as busy:
            bob.lock(name, blocking=False).acquire()
        assert busy.value.holder == "pytest main"
        with bob.lock(name + "/bob") as his:
            assert his.token > 0
            assert client.lock_info(name + "/bob").holder.label == "pytest bob"
        assert mine.locked()
    with bob.lock(name, timeout=10) as after:
        assert after.token > first
    bob.close()
