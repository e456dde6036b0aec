"""Waiting Acquires (docs/protocol.md, "Long-poll"): a grant is pushed to
the waiting call, the poll ends staying in the queue or leaving it as
``leave_queue_on_timeout`` says, a queued session is granted even if it
never calls again, and one poll lasts at most 15 s."""

from __future__ import annotations

import time

import pytest


def test_a_waiting_call_returns_when_another_session_releases(client, name):
    holder, waiter = client.session(), client.session()
    held = holder.acquire(name)
    wait = waiter.acquire_future(name, wait_ms=10_000)
    client.wait_until("the waiter is queued", lambda: client.waiters_of(name) == [waiter.id])
    holder.release(name)
    released = time.monotonic()
    got = wait.result()
    # Pushed by the release, not found at the end of the 10 s wait.
    assert time.monotonic() - released < 2.0
    assert got.acquired and not got.reentrant and not got.queued
    assert got.fencing_token > held.fencing_token
    assert client.holder_of(name) == waiter.id


def test_a_wait_that_ends_with_leave_queue_leaves_the_queue(client, name):
    holder, waiter = client.session(), client.session()
    assert holder.acquire(name).acquired
    started = time.monotonic()
    got = waiter.acquire(name, wait_ms=300, leave=True)
    assert time.monotonic() - started >= 0.3
    assert not got.acquired and not got.queued
    assert client.waiters_of(name) == []
    # Gone for good: the release grants nobody.
    holder.release(name)
    assert not client.get_lock(name).HasField("lock")


def test_a_wait_that_ends_without_leave_queue_stays_queued_and_is_granted_later(client, name):
    holder = client.session(label="holder")
    waiter = client.session()
    held = holder.acquire(name)
    started = time.monotonic()
    got = waiter.acquire(name, wait_ms=300, leave=False)
    assert time.monotonic() - started >= 0.3
    assert not got.acquired and got.queued
    assert got.holder.session_id == holder.id and got.holder.label == "holder"
    assert client.waiters_of(name) == [waiter.id]
    # The waiter never calls again, yet its turn comes.
    holder.release(name)
    client.wait_until("the queued session is granted", lambda: client.holder_of(name) == waiter.id)
    again = waiter.acquire(name)
    assert again.acquired and again.reentrant and again.fencing_token > held.fencing_token


def test_calling_again_with_a_new_seq_keeps_waiting(client, name):
    holder, waiter = client.session(), client.session()
    assert holder.acquire(name).acquired
    assert waiter.acquire(name, wait_ms=200).queued
    wait = waiter.acquire_future(name, wait_ms=10_000)
    # Still one entry, in the same place.
    assert client.waiters_of(name) == [waiter.id]
    holder.release(name)
    got = wait.result()
    # (Reentrant if the release was applied before this call's own entry.)
    assert got.acquired
    assert client.get_lock(name).lock.holder.fencing_token == got.fencing_token


@pytest.mark.parametrize("wait_ms", [0, 100])
def test_a_queued_session_gives_up_with_leave_queue(client, name, wait_ms):
    holder, waiter, third = client.session(), client.session(), client.session()
    assert holder.acquire(name).acquired
    assert waiter.acquire(name, wait_ms=100).queued
    assert third.acquire(name, wait_ms=100).queued
    assert client.waiters_of(name) == [waiter.id, third.id]
    got = waiter.acquire(name, wait_ms=wait_ms, leave=True)
    assert not got.acquired and not got.queued
    assert client.waiters_of(name) == [third.id]


def test_one_poll_lasts_at_most_15_s_and_a_longer_wait_stays_queued(client, name):
    holder, waiter = client.session(), client.session()
    assert holder.acquire(name).acquired
    started = time.monotonic()
    # Over the cap: the caller is expected to call again, so even with
    # leave_queue_on_timeout it keeps its place.
    got = waiter.acquire(name, wait_ms=60_000, leave=True)
    elapsed = time.monotonic() - started
    assert 14.5 <= elapsed < 25.0, elapsed
    assert not got.acquired and got.queued
    assert got.holder.session_id == holder.id
    assert client.waiters_of(name) == [waiter.id]
