"""Reads (docs/protocol.md, "GetLock", "ListLocks", "Status"): the shape
of a lock, listing by prefix in byte order with a limit, and the fields
each node reports about itself."""

from __future__ import annotations

import re
import time

import grpc

from support import expect_error, pb


def test_get_lock_shows_the_holder_and_the_waiters_in_queue_order(client, name):
    holder = client.session(label="holder")
    waiters = [client.session(label=f"waiter {i}") for i in range(2)]
    held = holder.acquire(name)
    for w in waiters:
        assert w.acquire(name, wait_ms=100).queued
    info = client.get_lock(name).lock
    assert info.name == name
    assert info.holder.session_id == holder.id
    assert info.holder.label == "holder"
    assert info.holder.fencing_token == held.fencing_token
    assert abs(info.holder.since_ms - time.time() * 1000) < 60_000
    assert [(w.session_id, w.label) for w in info.waiters] == [
        (w.id, f"waiter {i}") for i, w in enumerate(waiters)
    ]
    assert info.available_at_ms == 0


def test_list_locks_filters_by_prefix_in_byte_order(client, name):
    s = client.session()
    suffixes = ["b", "a", "B", "é", "a:b", "a\nb"]
    for suffix in suffixes:
        assert s.acquire(f"{name}/{suffix}").acquired
    # Outside the prefix, though it starts with the same characters.
    assert s.acquire(f"{name}-sibling").acquired
    reply = client.call("ListLocks", pb.ListLocksRequest(prefix=f"{name}/"))
    names = [info.name for info in reply.locks]
    expected = sorted(f"{name}/{x}" for x in suffixes)
    assert names == sorted(expected, key=lambda n: n.encode())
    assert not reply.truncated
    assert all(info.holder.session_id == s.id for info in reply.locks)


def test_list_locks_limit_truncates_and_zero_means_the_default(client, name):
    s = client.session()
    for i in range(3):
        assert s.acquire(f"{name}/{i}").acquired
    prefix = f"{name}/"

    def listed(limit):
        reply = client.call("ListLocks", pb.ListLocksRequest(prefix=prefix, limit=limit))
        return [info.name for info in reply.locks], reply.truncated

    everything = [f"{name}/{i}" for i in range(3)]
    assert listed(0) == (everything, False)
    assert listed(3) == (everything, False)
    assert listed(2) == (everything[:2], True)
    assert listed(1) == (everything[:1], True)
    # Over the server's largest page: lowered, not refused.
    assert listed(2**32 - 1) == (everything, False)


def test_list_locks_with_an_empty_prefix_lists_everything(client, name):
    s = client.session()
    assert s.acquire(name).acquired
    # Page by page: other tests may have left more names than one page.
    names, token = [], ""
    while True:
        reply = client.call("ListLocks", pb.ListLocksRequest(page_token=token))
        names += [info.name for info in reply.locks]
        token = reply.next_page_token
        if not token:
            break
    assert name in names
    assert names == sorted(names, key=lambda n: n.encode())


def test_list_locks_of_an_unused_prefix_is_empty(client, name):
    reply = client.call("ListLocks", pb.ListLocksRequest(prefix=name))
    assert list(reply.locks) == [] and not reply.truncated
    # A prefix longer than any name can be is refused, not scanned for.
    expect_error(lambda: client.call("ListLocks", pb.ListLocksRequest(prefix="x" * 600)),
                 grpc.StatusCode.INVALID_ARGUMENT, "invalid-argument")


def test_every_node_reports_its_status_and_agrees_on_the_leader(cluster):
    leader = cluster.leader()
    version = None
    for node in cluster.nodes.values():
        st = node.status()
        assert st.id == node.id
        assert st.addr == node.addr and st.peer_addr == node.peer_addr
        assert st.role == (pb.ROLE_LEADER if node is leader else pb.ROLE_FOLLOWER)
        assert st.has_leader and st.leader_id == leader.id and st.leader_addr == leader.addr
        assert sorted((m.id, m.addr, m.client_addr, m.voter) for m in st.members) == sorted(
            (n.id, n.peer_addr, n.addr, True) for n in cluster.nodes.values()
        )
        assert st.last_applied <= st.last_log_index
        assert st.snapshot_index <= st.last_applied
        assert st.uptime_ms > 0
        assert re.fullmatch(r"\d+\.\d+\.\d+\S*", st.version), st.version
        version = version or st.version
        assert st.version == version
        # The proto: the leader reports what each member holds; others nothing.
        if node is leader:
            assert sorted(r.id for r in st.replication) == sorted(cluster.nodes)
            assert all(r.matched_index <= st.last_log_index for r in st.replication)
        else:
            assert list(st.replication) == []
    assert len({node.status().term for node in cluster.nodes.values()}) == 1
