"""Lock modes on the wire (docs/protocol.md, "Lock modes"): shared holders
together, an exclusive request waiting for them, semaphores up to their
limit, and the refusals for mixing modes or giving a bad limit."""

from __future__ import annotations

import grpc

from support import expect_error, pb

SHARED = pb.LOCK_MODE_SHARED
EXCLUSIVE = pb.LOCK_MODE_EXCLUSIVE
SEMAPHORE = pb.LOCK_MODE_SEMAPHORE
INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def test_readers_hold_together_and_a_writer_waits_for_all_of_them(client, name):
    r1, r2, w = client.session(label="r1"), client.session(label="r2"), client.session()
    a = r1.acquire(name, mode=SHARED)
    b = r2.acquire(name, mode=SHARED)
    assert a.acquired and b.acquired
    info = client.get_lock(name).lock
    assert sorted(h.session_id for h in info.holders) == sorted([r1.id, r2.id])
    assert all(h.mode == SHARED for h in info.holders) and info.limit == 0
    assert info.holder.session_id == r1.id  # the first, for mode-blind clients

    busy = w.acquire(name)
    assert not busy.acquired and busy.holder.session_id == r1.id
    waiting = w.acquire_future(name, wait_ms=10_000)
    client.wait_until("the writer queues", lambda: client.waiters_of(name) == [w.id])
    assert client.get_lock(name).lock.waiters[0].mode == EXCLUSIVE
    # A reader that comes after a queued writer waits behind it.
    late = client.session()
    assert not late.acquire(name, mode=SHARED).acquired
    r1.release(name)
    assert not waiting.done() or not waiting.result().acquired
    r2.release(name)
    got = waiting.result()
    assert got.acquired and got.fencing_token > max(a.fencing_token, b.fencing_token)


def test_a_semaphore_grants_up_to_its_limit(client, name):
    holders = [client.session() for _ in range(3)]
    got = [s.acquire(name, mode=SEMAPHORE, limit=2) for s in holders]
    assert [g.acquired for g in got] == [True, True, False]
    info = client.get_lock(name).lock
    assert info.limit == 2 and len(info.holders) == 2
    assert all(h.mode == SEMAPHORE for h in info.holders)
    holders[0].release(name)
    assert holders[2].acquire(name, mode=SEMAPHORE, limit=2).acquired


def test_another_limit_or_mode_on_a_name_in_use_is_refused_with_the_current_one(client, name):
    s, t = client.session(), client.session()
    assert s.acquire(name, mode=SEMAPHORE, limit=3).acquired
    e = expect_error(lambda: t.acquire(name, mode=SEMAPHORE, limit=4), PRECONDITION,
                     "mode-conflict")
    assert "3" in e.details(), e.details()
    expect_error(lambda: t.acquire(name), PRECONDITION, "mode-conflict")
    # The same session asking for the name in another mode: no upgrades.
    other = client.session()
    other_name = name + "-rw"
    assert other.acquire(other_name, mode=SHARED).acquired
    expect_error(lambda: other.acquire(other_name), PRECONDITION, "mode-conflict")


def test_bad_limits_are_invalid_arguments(client, name):
    s = client.session()
    for mode, limit in [(SEMAPHORE, 0), (SEMAPHORE, 65_537), (SHARED, 2), (EXCLUSIVE, 1)]:
        expect_error(lambda: s.acquire(name, mode=mode, limit=limit), INVALID,
                     "invalid-argument")
    assert not client.get_lock(name).HasField("lock")
