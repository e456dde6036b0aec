"""Request numbers (docs/protocol.md, "Retries and deduplication"): a
retry with the same seq gets the first answer and is not applied again,
the 64-request window and stale requests, seq 0, and a seq reused for a
different request, which is refused and never answered with another
request's answer."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import grpc
import pytest

from support import Client, Session, expect_error, meta, ERROR_KIND

INVALID = grpc.StatusCode.INVALID_ARGUMENT
FAILED = grpc.StatusCode.FAILED_PRECONDITION
WINDOW = 64


def expect_seq_reused(call, session: Session, seq: int) -> None:
    e = expect_error(call, INVALID, "seq-reused")
    assert session.id in e.details(), e.details()
    assert re.search(rf"\b{seq}\b", e.details()), e.details()


# --- same request, same seq ---------------------------------------------------


def test_a_retried_grant_gets_the_first_answer_and_is_not_applied_again(client, name):
    s = client.session()
    seq = s.next_seq()
    first = s.acquire(name, seq=seq)
    assert first.acquired and not first.reentrant
    s.release(name)
    retry = s.acquire(name, seq=seq)
    assert retry.acquired and not retry.reentrant
    assert retry.fencing_token == first.fencing_token
    # Not applied again: the lock stays free.
    assert not client.get_lock(name).HasField("lock")


def test_a_retried_refusal_gets_the_first_answer_and_is_not_applied_again(client, name):
    s = client.session()
    seq = s.next_seq()
    expect_error(lambda: s.release(name, seq=seq), FAILED, "not-held")
    assert s.acquire(name).acquired
    # Applied again, this would release the lock.
    expect_error(lambda: s.release(name, seq=seq), FAILED, "not-held")
    assert client.holder_of(name) == s.id


def test_a_retried_try_lock_refusal_is_not_applied_again(client, name):
    holder, other = client.session(), client.session()
    assert holder.acquire(name).acquired
    seq = other.next_seq()
    assert not other.acquire(name, seq=seq).acquired
    holder.release(name)
    retry = other.acquire(name, seq=seq)
    assert not retry.acquired and not retry.queued
    assert not client.get_lock(name).HasField("lock")


def test_a_retried_queued_acquire_keeps_its_one_place(client, name):
    holder, waiter = client.session(), client.session()
    assert holder.acquire(name).acquired
    seq = waiter.next_seq()
    assert waiter.acquire(name, seq=seq, wait_ms=100).queued
    # Same request: another positive wait is the same wait mode.
    retry = waiter.acquire(name, seq=seq, wait_ms=150)
    assert not retry.acquired and retry.queued
    assert client.waiters_of(name) == [waiter.id]


def test_a_retried_release_gets_the_first_answer(client, name):
    s, other = client.session(), client.session()
    assert s.acquire(name).acquired
    seq = s.next_seq()
    s.release(name, seq=seq)
    assert other.acquire(name).acquired
    # The first answer (released), and `other` keeps the lock.
    s.release(name, seq=seq)
    assert client.holder_of(name) == other.id


def test_seq_zero_is_applied_every_time(client, name):
    s = client.session()
    assert s.acquire(name, seq=0).acquired
    s.release(name, seq=0)
    expect_error(lambda: s.release(name, seq=0), FAILED, "not-held")
    assert s.acquire(name, seq=0).acquired
    assert client.holder_of(name) == s.id


def test_retries_after_the_session_closed_answer_not_found(client, name):
    s = client.session()
    seq = s.next_seq()
    assert s.acquire(name, seq=seq).acquired
    s.close()
    expect_error(lambda: s.acquire(name, seq=seq), grpc.StatusCode.NOT_FOUND, "session-expired")


# --- the window -----------------------------------------------------------------


def test_the_window_remembers_the_64_most_recent_requests(client, name):
    s = client.session()
    # 65 refusals with seqs 10..74, then a grant with 75: the window now
    # holds 12..75, and 10 and 11 have been pushed out.
    for seq in range(10, 10 + WINDOW + 1):
        expect_error(lambda: s.release(name, seq=seq), FAILED, "not-held")
    assert s.acquire(name, seq=10 + WINDOW + 1).acquired
    for stale in (10, 11, 5, 1):  # pushed out, or never used but below them
        e = expect_error(lambda: s.release(name, seq=stale), FAILED, "stale-request")
        assert f"request {stale} is older than the retry window" in e.details()
    # Still in the window: the first answer, not applied again (which
    # would release the lock).
    for remembered in (12, 10 + WINDOW):
        expect_error(lambda: s.release(name, seq=remembered), FAILED, "not-held")
    assert client.holder_of(name) == s.id
    # A new number is applied as usual.
    s.release(name, seq=10 + WINDOW + 2)
    assert not client.get_lock(name).HasField("lock")


def test_a_stale_close_is_refused_and_the_session_lives_on(client, name):
    s = client.session()
    for seq in range(1, WINDOW + 2):
        expect_error(lambda: s.release(name, seq=seq), FAILED, "not-held")
    expect_error(lambda: s.close(seq=1), FAILED, "stale-request")
    assert s.keep_alive().ttl_ms > 0


# --- a seq reused for a different request --------------------------------------


def test_a_seq_reused_for_another_name_is_refused_not_a_fake_grant(client, name):
    s = client.session()
    first = s.acquire(name + "/A", seq=1)
    assert first.acquired
    expect_seq_reused(lambda: s.acquire(name + "/B", seq=1), s, 1)
    assert not client.get_lock(name + "/B").HasField("lock")
    expect_seq_reused(lambda: s.release(name + "/A", seq=1), s, 1)
    assert client.holder_of(name + "/A") == s.id
    # The identical retry still gets the first answer.
    retry = s.acquire(name + "/A", seq=1)
    assert retry.acquired and retry.fencing_token == first.fencing_token


def test_a_seq_reused_for_another_wait_mode_is_refused(client, name):
    s, holder = client.session(), client.session()
    assert s.acquire(name + "/try", seq=1).acquired
    expect_seq_reused(lambda: s.acquire(name + "/try", seq=1, wait_ms=1_000), s, 1)
    assert holder.acquire(name + "/wait").acquired
    assert s.acquire(name + "/wait", seq=2, wait_ms=100).queued
    expect_seq_reused(lambda: s.acquire(name + "/wait", seq=2), s, 2)
    assert client.waiters_of(name + "/wait") == [s.id]


def test_a_seq_reused_for_another_kind_of_call_is_refused(client, name):
    s = client.session()
    assert s.acquire(name, seq=1).acquired
    expect_error(lambda: s.release(name + "/free", seq=2), FAILED, "not-held")
    expect_seq_reused(lambda: s.close(seq=1), s, 1)
    expect_seq_reused(lambda: s.acquire(name + "/free", seq=2), s, 2)
    expect_seq_reused(lambda: s.close(seq=2), s, 2)
    # Nothing was applied: the session lives and holds its lock.
    assert s.keep_alive().ttl_ms > 0
    assert client.holder_of(name) == s.id
    assert not client.get_lock(name + "/free").HasField("lock")


def test_a_seq_reused_after_a_refusal_is_refused(client, name):
    s = client.session()
    expect_error(lambda: s.release(name + "/Z", seq=7), FAILED, "not-held")
    expect_seq_reused(lambda: s.release(name + "/Y", seq=7), s, 7)
    expect_seq_reused(lambda: s.acquire(name + "/Y", seq=7), s, 7)
    assert not client.get_lock(name + "/Y").HasField("lock")


# --- a model-based check of random request streams ----------------------------


@dataclass(frozen=True)
class Request:
    kind: str  # "acquire" (try-lock) or "release"
    name: str


@dataclass
class Model:
    """What the doc says the table does, for try-locks and releases."""

    holder: Dict[str, Optional[str]] = field(default_factory=dict)
    token: Dict[str, int] = field(default_factory=dict)
    # Per session: seq -> (request, answer).
    sent: Dict[str, Dict[int, Tuple[Request, tuple]]] = field(default_factory=dict)


def send(s: Session, req: Request, seq: int) -> tuple:
    """Sends ``req`` and reduces the reply to what the model predicts."""
    try:
        if req.kind == "acquire":
            r = s.acquire(req.name, seq=seq)
            if r.acquired:
                return ("granted", r.fencing_token, r.reentrant)
            return ("busy",)
        s.release(req.name, seq=seq)
        return ("released",)
    except grpc.RpcError as e:
        return ("error", e.code(), meta(e).get(ERROR_KIND))


def predict(model: Model, session: str, req: Request) -> Optional[tuple]:
    """The answer to a new request; None for a grant of a new token."""
    holder = model.holder.get(req.name)
    if req.kind == "acquire":
        if holder == session:
            return ("granted", model.token[req.name], True)
        return None if holder is None else ("busy",)
    if holder == session:
        return ("released",)
    if holder is None:
        return ("error", FAILED, "not-held")
    return ("error", grpc.StatusCode.PERMISSION_DENIED, "not-holder")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_requests_with_reused_seqs_never_get_a_wrong_answer(client: Client, name, seed):
    rng = random.Random(seed)
    sessions = [client.session(label=f"model {i}") for i in range(2)]
    names = [f"{name}/{i}" for i in range(3)]
    model = Model(sent={s.id: {} for s in sessions})
    for step in range(60):
        s = rng.choice(sessions)
        sent = model.sent[s.id]
        req = Request(rng.choice(["acquire", "release"]), rng.choice(names))
        if sent and rng.random() < 0.35:
            seq = rng.choice(sorted(sent))
            if rng.random() < 0.5:
                req = sent[seq][0]  # an identical retry
        else:
            seq = max(sent, default=0) + 1
        answer = send(s, req, seq)
        where = f"seed {seed} step {step}: {s.id} seq {seq} {req}"
        if seq in sent:
            first_req, first_answer = sent[seq]
            if req == first_req:
                assert answer == first_answer, f"{where}: a retry must get {first_answer}"
            else:
                assert answer == ("error", INVALID, "seq-reused"), (
                    f"{where}: reuses the seq of {first_req}, answered {answer}"
                )
        else:
            expected = predict(model, s.id, req)
            if expected is None:
                assert answer[0] == "granted" and answer[2] is False, f"{where}: {answer}"
                assert answer[1] > model.token.get(req.name, 0), f"{where}: token went back"
                model.holder[req.name] = s.id
                model.token[req.name] = answer[1]
            else:
                assert answer == expected, f"{where}: expected {expected}"
                if answer == ("released",):
                    model.holder[req.name] = None
            sent[seq] = (req, answer)
        # Whatever was answered, the table agrees with the model: in
        # particular, a fresh "acquired" means the session holds the lock.
        for n in names:
            assert client.holder_of(n) == model.holder.get(n), f"{where}: holder of {n}"
