"""Node failures, each on a cluster of its own: the leader killed while a
lock is held (the lock stays held, the keepalive follows the new leader,
release works after), and a lock lost when the cluster loses its quorum
for longer than the TTL (``lost`` is set, release raises ``LockLost``)."""

from __future__ import annotations

import time

import pytest

import raftlock


def test_leader_kill_while_a_lock_is_held(fresh_cluster, name):
    client = fresh_cluster.client(label="holder")
    other = fresh_cluster.client(label="other")
    held = client.lock(name, ttl=3)
    token = held.acquire()
    leader = fresh_cluster.wait_for_leader()
    fresh_cluster.kill(leader)
    new_leader = fresh_cluster.wait_for_leader()
    assert new_leader != leader
    # Longer than the TTL: only keepalives sent to the new leader keep it.
    time.sleep(4.5)
    assert held.locked() and not held.lost, held.lost_reason
    info = client.lock_info(name)
    assert info is not None and info.holder is not None
    assert info.holder.session_id == held.session_id
    assert info.holder.token == token == held.token
    with pytest.raises(raftlock.LockNotAcquired) as err:
        other.lock(name, blocking=False).acquire()
    assert err.value.holder == "holder"
    held.release()
    assert client.lock_info(name) is None
    with other.lock(name, blocking=False) as again:
        assert again.token > token
    client.close()
    other.close()


def test_a_lock_lost_with_the_quorum_is_reported(fresh_cluster, name):
    client = fresh_cluster.client(label="cut off", retry_for=5)
    held = client.lock(name, ttl=2)
    token = held.acquire()
    # Two of three nodes die: no keepalive can be confirmed any more.
    stopped = sorted(fresh_cluster.procs)[:2]
    for node in stopped:
        fresh_cluster.kill(node)
    deadline = time.monotonic() + 10
    while not held.lost and time.monotonic() < deadline:
        time.sleep(0.1)
    assert held.lost, "the lock was not reported lost"
    assert "TTL" in held.lost_reason or "expired" in held.lost_reason
    with pytest.raises(raftlock.LockLost):
        held.check()
    for node in stopped:
        fresh_cluster.spawn(node)
    fresh_cluster.wait_for_leader()
    with pytest.raises(raftlock.LockLost) as err:
        held.release()
    assert err.value.name == name
    assert not held.locked() and held.lost
    # The client opens a new session; the old one expires and frees the lock.
    with client.lock(name, ttl=2, timeout=30) as again:
        assert again.token > token and not again.lost
    client.close()
