"""Session secrets (docs/protocol.md, "Session secrets"): OpenSession
gives the opener a secret; KeepAlive, CloseSession, Acquire and Release
made with a session's public id but without its secret are refused with
PERMISSION_DENIED (kind ``not-session-owner``) and change nothing; the
secret is never shown by a read, a watch, an error or the server's log."""

from __future__ import annotations

import re
import secrets

import grpc
import pytest

from support import Session, expect_error, pb
from test_watch import start, take

DENIED = grpc.StatusCode.PERMISSION_DENIED
KIND = "not-session-owner"

# Ways to claim a session without its secret.
WRONG_SECRETS = {
    "none": lambda owner, other: "",
    "random": lambda owner, other: secrets.token_hex(32),
    "another-sessions": lambda owner, other: other.secret,
    "upper-case": lambda owner, other: owner.secret.upper(),
}


def test_open_session_gives_a_64_hex_digit_secret_of_its_own(client):
    a, b = client.open(), client.open()
    assert re.fullmatch(r"[0-9a-f]{64}", a.session_secret), a.session_secret
    assert a.session_secret != b.session_secret
    assert a.session_secret != a.session_id


@pytest.mark.parametrize("wrong", list(WRONG_SECRETS), ids=list(WRONG_SECRETS))
def test_acting_as_a_session_without_its_secret_is_denied_and_changes_nothing(
    client, name, wrong
):
    owner = client.session(label="owner")
    other = client.session(label="other")
    granted = owner.acquire(name)
    assert granted.acquired
    waiter = client.session(label="waiter")
    assert waiter.acquire(name, wait_ms=50).queued
    thief = Session(client, owner.id, WRONG_SECRETS[wrong](owner, other))
    stranger = Session(client, waiter.id, WRONG_SECRETS[wrong](waiter, other))

    calls = {
        "Release": (thief, lambda: thief.release(name)),
        "CloseSession": (thief, thief.close),
        "KeepAlive": (thief, thief.keep_alive),
        # As the holder: would be answered with the holder's token.
        "Acquire": (thief, lambda: thief.acquire(name)),
        # The owner's first request number: its remembered answer must not leak.
        "Acquire replayed": (thief, lambda: thief.acquire(name, seq=1)),
        # As a waiter that would give up and leave the queue.
        "Acquire as a waiter": (stranger, lambda: stranger.acquire(name, wait_ms=100, leave=True)),
        "Release as a waiter": (stranger, lambda: stranger.release(name)),
    }
    for what, (claimed, call) in calls.items():
        e = expect_error(call, DENIED, KIND)
        details = e.details()
        assert details.startswith(f"session {claimed.id} belongs to another caller: "), (
            what, details)
        assert details.endswith("needs the session's secret"), (what, details)
        assert owner.secret not in details and waiter.secret not in details

    info = client.get_lock(name).lock
    assert info.holder.session_id == owner.id
    assert info.holder.fencing_token == granted.fencing_token
    assert [w.session_id for w in info.waiters] == [waiter.id]
    # The owner is unaffected and still in charge.
    assert owner.keep_alive().ttl_ms > 0
    owner.release(name)
    client.wait_until("the waiter is granted", lambda: client.holder_of(name) == waiter.id)
    for s in (owner, other, waiter):
        s.close()


def test_the_secret_is_in_no_read_watch_or_log(cluster, client, name):
    watch, messages = start(cluster.leader(), f"{name}/")
    assert take(messages).kind == pb.WATCH_KIND_RESET
    holder = client.session(label="holder")
    waiter = client.session(label="waiter")
    assert holder.acquire(f"{name}/x").acquired
    assert waiter.acquire(f"{name}/x", wait_ms=50).queued
    seen = []
    changes = 0
    while changes < 2:  # the grant and the queueing
        m = take(messages)
        seen.append(str(m))
        changes += len(m.changes) if m.kind == pb.WATCH_KIND_CHANGES else 0
    watch.cancel()
    assert holder.id in "".join(seen)  # the public id is shown ...
    seen.append(str(client.get_lock(f"{name}/x")))
    seen.append(str(client.call("ListLocks", pb.ListLocksRequest(prefix=name))))
    denied = expect_error(lambda: Session(client, holder.id, "").release(f"{name}/x"),
                          DENIED, KIND)
    seen.append(denied.details())
    holder.close()
    waiter.close()
    for node_id in cluster.nodes:
        path = cluster.dir / f"node{node_id}.log"
        if path.exists():
            seen.append(path.read_text(errors="replace"))
    text = "\n".join(seen)
    for secret in (holder.secret, waiter.secret):
        assert secret not in text  # ... the secret never
