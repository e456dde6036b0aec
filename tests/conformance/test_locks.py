"""Acquire and Release without waiting (docs/protocol.md, "Acquire",
"Release", "Grants and fencing"): try-lock replies, reentrancy, who may
release, lock names, FIFO grants and fencing tokens."""

from __future__ import annotations

import time

import grpc
import pytest

from support import expect_error, pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def test_a_free_lock_is_granted_with_the_log_index_as_token(client, name):
    s = client.session()
    before = client.cluster.leader().status().last_applied
    got = s.acquire(name)
    after = client.cluster.leader().status().last_applied
    assert got.acquired and not got.reentrant and not got.queued
    assert before < got.fencing_token <= after
    info = client.get_lock(name).lock
    assert info.holder.session_id == s.id
    assert info.holder.fencing_token == got.fencing_token


def test_a_try_lock_on_a_held_lock_names_the_holder(client, name):
    holder = client.session(label="holder label")
    held = holder.acquire(name)
    other = client.session()
    got = other.acquire(name)
    assert not got.acquired and not got.queued and got.fencing_token == 0
    assert got.holder.session_id == holder.id
    assert got.holder.label == "holder label"
    assert got.holder.fencing_token == held.fencing_token
    assert abs(got.holder.since_ms - time.time() * 1000) < 60_000
    assert got.available_at_ms == 0
    # A try-lock never queues.
    assert client.waiters_of(name) == []


def test_reentrancy_is_not_counted(client, name):
    s = client.session()
    first = s.acquire(name)
    again = s.acquire(name)
    assert again.acquired and again.reentrant
    assert again.fencing_token == first.fencing_token
    # Reentrant with a wait too: answered at once, not queued.
    waited = s.acquire(name, wait_ms=5_000)
    assert waited.acquired and waited.reentrant and waited.fencing_token == first.fencing_token
    s.release(name)
    assert not client.get_lock(name).HasField("lock")


def test_release_by_another_session_is_not_holder_and_names_the_holder(client, name):
    holder = client.session(label="the rightful holder")
    assert holder.acquire(name).acquired
    other = client.session()
    e = expect_error(lambda: other.release(name), grpc.StatusCode.PERMISSION_DENIED, "not-holder")
    assert "the rightful holder" in e.details() and holder.id in e.details()
    assert client.holder_of(name) == holder.id


def test_release_of_a_free_lock_is_not_held(client, name):
    s = client.session()
    expect_error(lambda: s.release(name), grpc.StatusCode.FAILED_PRECONDITION, "not-held")


@pytest.mark.parametrize(
    "suffix",
    ["a:b:c", "line\nbreak", "tab\tand space", "x" * 400, "é" * 100],
    ids=["colons", "newline", "whitespace", "long", "multibyte"],
)
def test_names_are_any_non_empty_utf8_up_to_512_bytes(client, name, suffix):
    full = (name + "/" + suffix)
    s = client.session()
    assert s.acquire(full).acquired
    assert client.get_lock(full).lock.name == full
    s.release(full)


@pytest.mark.parametrize(
    "full",
    ["x" * 512, "é" * 256],
    ids=["512-ascii", "256-two-byte-chars"],
)
def test_a_512_byte_name_is_allowed(client, full):
    s = client.session()
    assert s.acquire(full).acquired
    assert client.get_lock(full).lock.name == full
    s.release(full)


@pytest.mark.parametrize(
    "full",
    ["x" * 513, "é" * 257],
    ids=["513-ascii", "257-two-byte-chars"],
)
def test_a_name_over_512_bytes_is_invalid(client, full):
    s = client.session()
    expect_error(lambda: s.acquire(full), INVALID, "invalid-argument")
    expect_error(lambda: s.release(full), INVALID, "invalid-argument")
    expect_error(lambda: client.get_lock(full), INVALID, "invalid-argument")


def test_an_empty_name_is_invalid(client):
    s = client.session()
    expect_error(lambda: s.acquire(""), INVALID, "invalid-argument")
    expect_error(lambda: s.acquire("", wait_ms=1_000), INVALID, "invalid-argument")
    expect_error(lambda: s.release(""), INVALID, "invalid-argument")
    expect_error(lambda: client.get_lock(""), INVALID, "invalid-argument")


def test_names_have_no_hierarchy(client, name):
    a, b = client.session(), client.session()
    assert a.acquire(name + ":parent").acquired
    assert b.acquire(name + ":parent:child").acquired
    assert b.acquire(name + ":paren").acquired


def test_waiters_are_granted_in_arrival_order_with_increasing_tokens(client, name):
    holder, first, second = (client.session(label=f"s{i}") for i in range(3))
    tokens = [holder.acquire(name).fencing_token]
    first_wait = first.acquire_future(name, wait_ms=15_000)
    client.wait_until("first is queued", lambda: client.waiters_of(name) == [first.id])
    second_wait = second.acquire_future(name, wait_ms=15_000)
    client.wait_until("second is queued after it",
                      lambda: client.waiters_of(name) == [first.id, second.id])
    # Calling again while queued keeps the place and adds no entry.
    again = first.acquire(name, wait_ms=100)
    assert not again.acquired and again.queued
    assert again.holder.session_id == holder.id
    assert client.waiters_of(name) == [first.id, second.id]

    holder.release(name)
    got = first_wait.result()
    assert got.acquired and not got.reentrant
    tokens.append(got.fencing_token)
    assert client.waiters_of(name) == [second.id]
    assert client.holder_of(name) == first.id
    first.release(name)
    got = second_wait.result()
    assert got.acquired
    tokens.append(got.fencing_token)
    assert client.holder_of(name) == second.id
    assert tokens == sorted(set(tokens)), tokens


def test_fencing_tokens_strictly_increase_per_name(client, name):
    sessions = [client.session() for _ in range(3)]
    tokens = []
    for round_ in range(9):
        s = sessions[round_ % 3]
        got = s.acquire(name)
        assert got.acquired
        tokens.append(got.fencing_token)
        # A grant on another name in between must not matter.
        s.acquire(f"{name}/other/{round_}")
        s.release(name)
    assert all(a < b for a, b in zip(tokens, tokens[1:])), tokens
    # A release grants the next waiter in the same entry: its token is new.
    holder, waiter = sessions[0], sessions[1]
    held = holder.acquire(name).fencing_token
    wait = waiter.acquire_future(name, wait_ms=15_000)
    client.wait_until("the waiter is queued", lambda: client.waiters_of(name) == [waiter.id])
    holder.release(name)
    assert wait.result().fencing_token > held > tokens[-1]


def test_a_try_lock_refusal_leaves_no_trace(client, name):
    holder, other = client.session(), client.session()
    assert holder.acquire(name).acquired
    assert not other.acquire(name).acquired
    holder.release(name)
    assert not client.get_lock(name).HasField("lock")
    assert other.acquire(name).acquired


def test_get_lock_of_an_unknown_name_has_no_lock(client, name):
    assert not client.get_lock(name).HasField("lock")
    assert client.call("GetLock", pb.GetLockRequest(name=name)) == pb.GetLockResponse()
