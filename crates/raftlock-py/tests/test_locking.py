"""Locking from one process against the shared 3-node cluster: the context
manager, fencing tokens, try-lock and timeouts, non-owner release, the GIL
released while waiting, threads, argument errors, an unreachable cluster."""

from __future__ import annotations

import threading
import time

import pytest

import raftlock


def test_with_block_holds_the_lock_and_releases_it(client, name):
    with client.lock(name) as held:
        assert held.locked()
        assert isinstance(held.token, int) and held.token > 0
        assert held.lost is False
        info = client.lock_info(name)
        assert info is not None and info.holder is not None
        assert info.holder.session_id == held.session_id
        assert info.holder.label == "pytest main" == held.label
        assert info.holder.token == held.token
    assert not held.locked() and held.token is None
    assert client.lock_info(name) is None


def test_acquire_and_release_by_hand(client, name):
    lock = client.lock(name)
    token = lock.acquire()
    assert token == lock.token
    lock.release()
    assert client.lock_info(name) is None
    # A Lock object can be used again.
    assert lock.acquire() > token
    lock.release()


def test_fencing_tokens_strictly_increase(client, other_client, name):
    tokens = []
    for i in range(6):
        c = client if i % 2 == 0 else other_client
        with c.lock(name) as held:
            tokens.append(held.token)
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens), tokens


def test_try_lock_fails_at_once_naming_the_holder(client, other_client, name):
    with client.lock(name):
        started = time.monotonic()
        with pytest.raises(raftlock.LockNotAcquired) as err:
            other_client.lock(name, blocking=False).acquire()
        assert time.monotonic() - started < 2.0
        assert err.value.holder == "pytest main"
        assert "pytest main" in str(err.value)
        # Also via acquire(blocking=False) and timeout=0.
        with pytest.raises(raftlock.LockNotAcquired):
            other_client.lock(name).acquire(blocking=False)
        with pytest.raises(raftlock.LockNotAcquired):
            other_client.lock(name, timeout=0).acquire()
    # Free again: the try-lock succeeds.
    with other_client.lock(name, blocking=False) as held:
        assert held.locked()


def test_timeout_gives_up_and_leaves_the_queue(client, other_client, name):
    with client.lock(name):
        started = time.monotonic()
        with pytest.raises(raftlock.LockNotAcquired) as err:
            with other_client.lock(name, timeout=1.0):
                pytest.fail("acquired a held lock")
        waited = time.monotonic() - started
        assert 0.9 <= waited < 5.0, waited
        assert err.value.holder == "pytest main"
        info = client.lock_info(name)
        assert info is not None and info.waiters == ()
    # The timed-out waiter was not granted the lock later.
    assert client.lock_info(name) is None


def test_a_waiter_is_granted_the_lock_when_it_is_released(client, other_client, name):
    first = client.lock(name)
    first_token = first.acquire()
    got = {}

    def wait() -> None:
        with other_client.lock(name, timeout=20) as held:
            got["token"] = held.token
            got["at"] = time.monotonic()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)
    assert "token" not in got, "the waiter got a held lock"
    released_at = time.monotonic()
    first.release()
    waiter.join(10)
    assert got["token"] > first_token
    assert got["at"] - released_at < 2.0


def test_non_owner_release_raises_not_owner_naming_the_holder(client, other_client, name):
    with client.lock(name) as held:
        with pytest.raises(raftlock.NotOwner) as err:
            other_client.lock(name).release()
        assert err.value.holder == "pytest main"
        assert "pytest main" in str(err.value)
        assert not isinstance(err.value, raftlock.NotHeld)
        # Another Lock object of the same client does not own it either.
        with pytest.raises(raftlock.NotOwner, match="another Lock object"):
            client.lock(name).release()
        # Still held by its owner, who can release it.
        info = client.lock_info(name)
        assert info is not None and info.holder.session_id == held.session_id
    with pytest.raises(raftlock.NotHeld):
        other_client.lock(name).release()


def test_the_gil_is_released_while_waiting(client, other_client, name):
    held = client.lock(name)
    held.acquire()
    done = threading.Event()

    def wait() -> None:
        with other_client.lock(name, timeout=20):
            done.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)
    # Pure-Python work on this thread: it runs only if the waiter let go of the GIL.
    count, until = 0, time.monotonic() + 0.5
    while time.monotonic() < until:
        count += 1
    assert count > 10_000, count
    assert not done.is_set()
    held.release()
    waiter.join(10)
    assert done.is_set()


def test_two_lock_objects_in_one_process_exclude_each_other(client, name):
    inside = []
    overlaps = []

    def work(i: int) -> None:
        for _ in range(3):
            with client.lock(name, timeout=30):
                inside.append(i)
                if len(inside) > 1:
                    overlaps.append(list(inside))
                time.sleep(0.01)
                inside.remove(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert overlaps == []


def test_a_lock_is_not_reentrant_across_lock_objects(client, name):
    with client.lock(name):
        with pytest.raises(raftlock.LockNotAcquired, match="another Lock object"):
            client.lock(name, blocking=False).acquire()


def test_bad_arguments(client, name):
    with pytest.raises(raftlock.InvalidArgument):
        client.lock("").acquire()
    with pytest.raises(ValueError):
        client.lock("x" * 600).acquire()
    with pytest.raises(raftlock.InvalidArgument):
        client.lock(name, ttl=0.1).acquire()
    with pytest.raises(ValueError):
        client.lock(name, blocking=False, timeout=1)
    with pytest.raises(ValueError):
        client.lock(name).acquire(timeout=-1)
    with pytest.raises(raftlock.InvalidArgument):
        raftlock.Client([])


def test_bad_durations_are_refused_before_any_network_call():
    # Nothing listens on port 1: a check made by the cluster would take
    # retry_for (30 s) to fail, and fail with another error.
    client = raftlock.Client("127.0.0.1:1", retry_for=30.0)
    started = time.monotonic()
    for kwargs, message in [
        ({"ttl": 0}, "ttl must be 1 to 3600 seconds, not 0"),
        ({"ttl": -1}, "ttl must be 1 to 3600 seconds, not -1"),
        ({"ttl": 3601}, "ttl must be 1 to 3600 seconds, not 3601"),
        ({"ttl": float("nan")}, "ttl must be 1 to 3600 seconds, not nan"),
        ({"ttl": "10"}, "ttl must be 1 to 3600 seconds, not '10'"),
        ({"lock_delay": 61}, "lock_delay must be 0 to 60 seconds, not 61"),
        ({"lock_delay": -0.5}, "lock_delay must be 0 to 60 seconds, not -0.5"),
    ]:
        with pytest.raises(raftlock.InvalidArgument) as raised:
            client.lock("anything", **kwargs)
        assert str(raised.value) == message
        assert isinstance(raised.value, ValueError)
    assert time.monotonic() - started < 1.0
    # The limits themselves are fine.
    client.lock("anything", ttl=1, lock_delay=60)
    client.lock("anything", ttl=3600, lock_delay=0)


def test_an_unreachable_cluster_raises_cluster_unavailable():
    # Nothing listens on port 1; give up after one second.
    client = raftlock.Client("127.0.0.1:1", retry_for=1.0)
    started = time.monotonic()
    with pytest.raises(raftlock.ClusterUnavailable):
        client.lock("anything").acquire()
    assert time.monotonic() - started < 10


def test_endpoints_default_from_the_environment(monkeypatch):
    monkeypatch.setenv("RAFTLOCK_ENDPOINTS", "127.0.0.2:1, 127.0.0.3:2")
    assert raftlock.Client().endpoints == ["127.0.0.2:1", "127.0.0.3:2"]
    monkeypatch.delenv("RAFTLOCK_ENDPOINTS")
    assert raftlock.Client().endpoints == list(raftlock.DEFAULT_ENDPOINTS)


def test_client_close_releases_what_it_holds(cluster, other_client, name):
    client = cluster.client(label="closing")
    lock = client.lock(name)
    lock.acquire()
    client.close()
    assert not lock.locked()
    assert other_client.lock_info(name) is None
    with other_client.lock(name, blocking=False):
        pass


def test_locks_lists_the_table(client, name):
    with client.lock(name + "/a"), client.lock(name + "/b"):
        names = [i.name for i in client.locks(prefix=name)]
        assert names == [name + "/a", name + "/b"]


def test_list_locks_reads_the_table_in_pages(client, name):
    names = [f"{name}/{i}" for i in range(5)]
    held = [client.lock(n) for n in names]
    for lock in held:
        lock.acquire()
    try:
        native = client._native
        seen, token, sizes = [], None, []
        while True:
            page, token = native.list_locks_page(name + "/", 2, token)
            sizes.append(len(page))
            seen += [info["name"] for info in page]
            if token is None:
                break
        assert sizes == [2, 2, 1]
        assert seen == sorted(names)
        # list_locks pages under the hood and says when the limit cut it.
        infos, truncated = native.list_locks(name + "/", 3)
        assert [i["name"] for i in infos] == sorted(names)[:3] and truncated
        infos, truncated = native.list_locks(name + "/", 0)
        assert len(infos) == 5 and not truncated
    finally:
        for lock in held:
            lock.release()
