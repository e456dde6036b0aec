"""Sessions (docs/protocol.md, "Sessions", "OpenSession", "KeepAlive",
"CloseSession"): the bounds on TTL, lock-delay and label, keepalive,
expiry and what it does to a session's locks and waits, lock-delay."""

from __future__ import annotations

import re
import secrets
import time

import grpc
import pytest

from support import expect_error, pb

NOT_FOUND = grpc.StatusCode.NOT_FOUND
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def test_open_session_answers_a_32_hex_digit_id_and_the_ttl(client):
    reply = client.open(ttl_ms=12_345)
    assert re.fullmatch(r"[0-9a-f]{32}", reply.session_id), reply.session_id
    assert reply.ttl_ms == 12_345
    other = client.open(ttl_ms=12_345)
    assert other.session_id != reply.session_id


@pytest.mark.parametrize(
    "ttl_ms, lock_delay_ms, label",
    [
        (1_000, 0, ""),
        (3_600_000, 60_000, "x" * 256),
        (60_000, 0, "é" * 128),  # 256 bytes
        (60_000, 0, "host-7 pid 4242\njob: 12"),
    ],
    ids=["smallest", "largest", "multibyte-label-at-limit", "free-text-label"],
)
def test_open_session_accepts_the_bounds(client, ttl_ms, lock_delay_ms, label):
    reply = client.open(ttl_ms=ttl_ms, lock_delay_ms=lock_delay_ms, label=label)
    assert reply.ttl_ms == ttl_ms
    client.call("CloseSession", pb.CloseSessionRequest(
        session_id=reply.session_id, session_secret=reply.session_secret, seq=1))


@pytest.mark.parametrize(
    "ttl_ms, lock_delay_ms, label",
    [
        (0, 0, ""),
        (999, 0, ""),
        (3_600_001, 0, ""),
        (60_000, 60_001, ""),
        (60_000, 0, "x" * 257),
        (60_000, 0, "é" * 129),  # 258 bytes, 129 characters
    ],
    ids=["ttl-0", "ttl-999", "ttl-over-1h", "lock-delay-over-60s", "label-257-bytes",
         "label-counted-in-bytes"],
)
def test_open_session_refuses_out_of_range_arguments(client, ttl_ms, lock_delay_ms, label):
    request = pb.OpenSessionRequest(ttl_ms=ttl_ms, lock_delay_ms=lock_delay_ms, label=label)
    expect_error(lambda: client.call("OpenSession", request), INVALID, "invalid-argument")


def test_keepalive_answers_the_ttl_and_keeps_the_session_past_it(client, name):
    s = client.session(ttl_ms=1_000)
    # Three TTLs with a keepalive every TTL/4: the session must live on.
    until = time.monotonic() + 3.0
    while time.monotonic() < until:
        assert s.keep_alive().ttl_ms == 1_000
        time.sleep(0.25)
    assert s.acquire(name).acquired
    s.close()


def test_every_call_of_an_unknown_session_is_session_expired(client, name):
    sid = secrets.token_hex(16)
    for method, request in {
        "KeepAlive": pb.KeepAliveRequest(session_id=sid),
        "Acquire": pb.AcquireRequest(session_id=sid, seq=1, name=name),
        "Acquire with a wait": pb.AcquireRequest(session_id=sid, seq=2, name=name, wait_ms=5_000),
        "Release": pb.ReleaseRequest(session_id=sid, seq=3, name=name),
        "CloseSession": pb.CloseSessionRequest(session_id=sid, seq=4),
    }.items():
        method = method.split()[0]
        expect_error(lambda: client.call(method, request), NOT_FOUND, "session-expired")
    assert not client.get_lock(name).HasField("lock")


def test_an_expired_session_loses_its_locks_and_its_calls_answer_session_expired(client, name):
    sent = time.monotonic()
    s = client.session(ttl_ms=1_000, label="expires")
    assert s.acquire(name).acquired
    acquired = time.monotonic()
    client.wait_until("the session without keepalives expires",
                      lambda: client.holder_of(name) is None)
    gone = time.monotonic()
    # Not before one TTL from when OpenSession was sent; soon after it.
    assert gone - sent >= 1.0
    assert gone - acquired < 5.0
    for call in (
        s.keep_alive,
        lambda: s.acquire(name + "/other"),
        lambda: s.release(name),
        s.close,
    ):
        expect_error(call, NOT_FOUND, "session-expired")


def test_a_wait_ends_with_session_expired_when_its_session_expires(client, name):
    holder = client.session()
    assert holder.acquire(name).acquired
    waiter = client.session(ttl_ms=1_000)
    started = time.monotonic()
    e = expect_error(lambda: waiter.acquire(name, wait_ms=10_000), NOT_FOUND, "session-expired")
    # Ended by the expiry (after about one TTL), not by the end of the wait.
    assert time.monotonic() - started < 8.0, e.details()
    assert waiter.id not in client.waiters_of(name)
    holder.close()


def test_lock_delay_keeps_an_expired_holders_lock_ungrantable(client, name):
    lost = client.session(ttl_ms=1_000, lock_delay_ms=3_000, label="paused holder")
    first = lost.acquire(name)
    assert first.acquired
    client.wait_until("the holder without keepalives expires",
                      lambda: client.holder_of(name) is None, within=10.0)
    info = client.get_lock(name)
    # Still listed: nobody holds it, but a lock-delay is in force.
    assert info.HasField("lock")
    available_at_ms = info.lock.available_at_ms
    assert available_at_ms > 0
    # Noticed within a poll of the expiry, so well inside the 3 s delay.
    try_lock = client.session().acquire(name)
    assert not try_lock.acquired and not try_lock.queued
    assert not try_lock.HasField("holder")
    assert try_lock.available_at_ms == available_at_ms
    waiter = client.session()
    got = waiter.acquire(name, wait_ms=10_000)
    granted_at_ms = time.time() * 1000
    assert got.acquired
    assert got.fencing_token > first.fencing_token
    # The grant comes when the delay ends, with no other traffic to carry
    # it (the applied clock is this machine's wall clock: the nodes run here).
    assert available_at_ms - 50 <= granted_at_ms < available_at_ms + 2_000


@pytest.mark.parametrize("how", ["release", "close"])
def test_release_and_close_never_start_a_lock_delay(client, name, how):
    s = client.session(lock_delay_ms=60_000)
    assert s.acquire(name).acquired
    if how == "release":
        s.release(name)
    else:
        assert list(s.close().released) == [name]
    assert not client.get_lock(name).HasField("lock")
    assert client.session().acquire(name).acquired


def test_close_grants_each_held_lock_to_its_first_waiter_and_drops_the_waits(client, name):
    closing = client.session(label="closing")
    other = client.session(label="other")
    assert closing.acquire(name + "/held").acquired
    assert other.acquire(name + "/awaited").acquired
    # `closing` waits for a lock and stays queued when its poll ends.
    assert closing.acquire(name + "/awaited", wait_ms=100).queued
    waiter = client.session(label="waiter")
    wait = waiter.acquire_future(name + "/held", wait_ms=10_000)
    client.wait_until("the waiter is queued",
                      lambda: client.waiters_of(name + "/held") == [waiter.id])
    assert list(closing.close().released) == [name + "/held"]
    got = wait.result()
    assert got.acquired and not got.reentrant
    assert client.holder_of(name + "/held") == waiter.id
    assert client.waiters_of(name + "/awaited") == []


def test_a_retried_close_whose_first_attempt_applied_answers_not_found(client):
    s = client.session()
    seq = s.next_seq()
    s.close(seq=seq)
    expect_error(lambda: s.close(seq=seq), NOT_FOUND, "session-expired")
