"""Watch (docs/protocol.md, "Watch"): the state under a prefix with its
index, then each change with the index of the entry that made it; a watch
resumed from an index (on any node) continues with the changes after it,
none missed and none repeated; an index never applied is refused."""

from __future__ import annotations

import queue
import threading
from typing import List, Tuple

import grpc

from support import pb


def start(node, prefix: str, from_index: int = 0):
    """A watch on ``node`` whose messages arrive on a queue."""
    call = node.stub.Watch(pb.WatchRequest(prefix=prefix, from_index=from_index))
    messages: "queue.Queue" = queue.Queue()

    def pump() -> None:
        try:
            for message in call:
                messages.put(message)
        except grpc.RpcError as e:
            messages.put(e)

    threading.Thread(target=pump, daemon=True).start()
    return call, messages


def take(messages, timeout: float = 10.0):
    message = messages.get(timeout=timeout)
    if isinstance(message, grpc.RpcError):
        raise message
    return message


def changes_until(messages, count: int) -> List[Tuple[int, int, str, int]]:
    """(index, kind, name, token) of the next ``count`` changes."""
    out: List[Tuple[int, int, str, int]] = []
    while len(out) < count:
        m = take(messages)
        assert m.kind == pb.WATCH_KIND_CHANGES, m
        out.extend((m.index, c.kind, c.name, c.fencing_token) for c in m.changes)
    return out


def test_state_then_live_changes_with_their_indexes(cluster, client, name):
    s = client.session(label="watched")
    held = s.acquire(f"{name}/a")
    waiter = client.session(label="waiter")
    assert waiter.acquire(f"{name}/a", wait_ms=100).queued
    s.acquire(f"{name}-outside")

    call, messages = start(cluster.leader(), f"{name}/")
    reset = take(messages)
    assert reset.kind == pb.WATCH_KIND_RESET and not reset.resync
    state = take(messages)
    assert state.kind == pb.WATCH_KIND_STATE and state.index == reset.index
    assert [(c.kind, c.session_id) for c in state.changes] == [
        (pb.CHANGE_KIND_GRANTED, s.id),
        (pb.CHANGE_KIND_QUEUED, waiter.id),
    ]
    assert state.changes[0].fencing_token == held.fencing_token
    assert state.changes[0].mode == pb.LOCK_MODE_EXCLUSIVE
    synced = take(messages)
    assert (synced.kind, synced.index) == (pb.WATCH_KIND_SYNCED, reset.index)

    # One release that hands the lock on: both changes at one index.
    s.release(f"{name}/a")
    m = take(messages)
    assert m.kind == pb.WATCH_KIND_CHANGES and m.index > synced.index
    assert [(c.kind, c.session_id) for c in m.changes] == [
        (pb.CHANGE_KIND_RELEASED, s.id),
        (pb.CHANGE_KIND_GRANTED, waiter.id),
    ]
    assert m.changes[1].fencing_token == m.index
    call.cancel()


def test_resume_on_another_node_without_gaps_or_repeats(cluster, client, name):
    s = client.session()
    call, messages = start(cluster.leader(), name)
    assert take(messages).kind == pb.WATCH_KIND_RESET
    synced = take(messages)
    for _ in range(3):
        s.acquire(name)
        s.release(name)
    first = changes_until(messages, 6)
    call.cancel()
    # Cut off after the first three changes: resume on a follower.
    resume_after = first[2][0]
    follower = next(cluster.followers())
    for _ in range(2):
        s.acquire(name)
        s.release(name)
    call, messages = start(follower, name, from_index=resume_after)
    resumed = changes_until(messages, 3 + 4)
    call.cancel()
    assert resumed[:3] == first[3:]
    everything = first[:3] + resumed
    indexes = [i for i, *_ in everything]
    assert indexes == sorted(indexes) and indexes[0] > synced.index
    kinds = [k for _, k, *_ in everything]
    assert kinds == [pb.CHANGE_KIND_GRANTED, pb.CHANGE_KIND_RELEASED] * 5
    # Each grant's token is its index; its release carries the same token.
    for (gi, _, _, gt), (_, _, _, rt) in zip(everything[::2], everything[1::2]):
        assert gi == gt == rt


def test_an_index_never_applied_is_refused(cluster):
    call = cluster.leader().stub.Watch(pb.WatchRequest(prefix="", from_index=1 << 50))
    try:
        next(iter(call))
        raise AssertionError("a watch from an index never applied was served")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNAVAILABLE
        assert "applied" in e.details()
