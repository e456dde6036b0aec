"""What any node does with any call (docs/protocol.md, "Transport",
"Leader handling", "Sessions"): followers redirect leader-only calls with
the leader's id and client address, Status is answered locally, oversized
requests and malformed session ids are refused, and the client and peer
ports each serve only their own services. On a secured cluster the Raft
calls here come with a member's node certificate (support.Node's
``peer_channel``), so they reach the decoder; test_auth.py checks the
refusals before it."""

from __future__ import annotations

import secrets
import time

import grpc
import pytest

from support import (
    LEADER_ADDR,
    LEADER_ID,
    UNREACHABLE_LEADER,
    expect_error,
    meta,
    pb,
    pb_grpc,
    raft_pb,
    raft_pb_grpc,
)

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
INVALID = grpc.StatusCode.INVALID_ARGUMENT

# Every leader-only call, as a request a follower must not serve (made by
# the session's opener: with its id and secret).
LEADER_ONLY = {
    "OpenSession": lambda s, name: pb.OpenSessionRequest(ttl_ms=60_000, label="redirected"),
    "KeepAlive": lambda s, name: pb.KeepAliveRequest(
        session_id=s.session_id, session_secret=s.session_secret),
    "CloseSession": lambda s, name: pb.CloseSessionRequest(
        session_id=s.session_id, session_secret=s.session_secret, seq=3),
    "Acquire": lambda s, name: pb.AcquireRequest(
        session_id=s.session_id, session_secret=s.session_secret, seq=1, name=name),
    "Release": lambda s, name: pb.ReleaseRequest(
        session_id=s.session_id, session_secret=s.session_secret, seq=2, name=name),
    "GetLock": lambda s, name: pb.GetLockRequest(name=name),
    "ListLocks": lambda s, name: pb.ListLocksRequest(prefix=name),
}


@pytest.mark.parametrize("method", list(LEADER_ONLY))
def test_a_follower_redirects_to_the_leader_which_serves(client, name, method):
    sid = client.open()
    # The calls in the order a session makes them, so each one succeeds
    # on the leader: Acquire before Release before CloseSession.
    if method in ("Release", "CloseSession"):
        client.call("Acquire", LEADER_ONLY["Acquire"](sid, name))
    if method == "CloseSession":
        client.call("Release", LEADER_ONLY["Release"](sid, name))
    request = LEADER_ONLY[method](sid, name)
    leader = client.cluster.leader()
    for follower in client.cluster.followers():
        e = expect_error(lambda: getattr(follower.stub, method)(request, timeout=10),
                         UNAVAILABLE, None)
        md = meta(e)
        assert md.get(LEADER_ID) == str(leader.id), md
        assert md.get(LEADER_ADDR) == leader.addr, md
        assert e.details() == f"not the leader; the leader is node {leader.id} at {leader.addr}"
    # The named address serves the same request.
    getattr(client.cluster.node_at(leader.addr).stub, method)(request, timeout=10)


def test_a_follower_told_a_live_leader_is_unreachable_holds_the_call_then_names_none(client):
    leader = client.cluster.leader()
    follower = next(client.cluster.followers())
    request = pb.GetLockRequest(name="unreachable-leader")
    started = time.monotonic()
    e = expect_error(
        lambda: follower.stub.GetLock(
            request, timeout=10, metadata=((UNREACHABLE_LEADER, str(leader.id)),)
        ),
        UNAVAILABLE, "no-leader",
    )
    # Held for up to 800 ms waiting for another leader, which never came.
    assert time.monotonic() - started >= 0.7
    assert LEADER_ID not in meta(e) and LEADER_ADDR not in meta(e)


def test_naming_another_node_unreachable_does_not_stop_the_redirect(client):
    leader = client.cluster.leader()
    follower, other = list(client.cluster.followers())
    e = expect_error(
        lambda: follower.stub.GetLock(
            pb.GetLockRequest(name="unreachable-leader"), timeout=10,
            metadata=((UNREACHABLE_LEADER, str(other.id)),),
        ),
        UNAVAILABLE, None,
    )
    assert meta(e).get(LEADER_ADDR) == leader.addr


def test_a_follower_answers_status_itself(client):
    for follower in client.cluster.followers():
        st = follower.stub.Status(pb.StatusRequest(), timeout=10)
        assert st.id == follower.id and st.role == pb.ROLE_FOLLOWER


def test_a_request_over_64_kib_is_out_of_range(client):
    sid = client.open().session_id
    big = "x" * (65 * 1024)
    calls = {
        "Acquire": pb.AcquireRequest(session_id=sid, seq=1, name=big),
        "OpenSession": pb.OpenSessionRequest(ttl_ms=60_000, label=big),
        "ListLocks": pb.ListLocksRequest(prefix=big),
    }
    for method, request in calls.items():
        for node in client.cluster.nodes.values():
            expect_error(lambda: getattr(node.stub, method)(request, timeout=10),
                         grpc.StatusCode.OUT_OF_RANGE, None)
    # Just under the limit is decoded, then judged on its merits: a prefix
    # longer than any name is refused as an argument, not as a size.
    request = pb.ListLocksRequest(prefix="x" * (63 * 1024))
    expect_error(lambda: client.call("ListLocks", request),
                 grpc.StatusCode.INVALID_ARGUMENT, "invalid-argument")


MALFORMED_IDS = {
    "empty": "",
    "short": secrets.token_hex(16)[:31],
    "long": secrets.token_hex(16) + "0",
    "not-hex": "g" * 32,
    "spaces": " " + secrets.token_hex(16)[:30] + " ",
    "plus-sign": "+" + secrets.token_hex(16)[:31],
    "uuid-dashes": "12345678-1234-1234-1234-123456789abc",
}


@pytest.mark.parametrize("sid", list(MALFORMED_IDS.values()), ids=list(MALFORMED_IDS))
def test_a_malformed_session_id_is_invalid_argument(client, name, sid):
    requests = {
        "KeepAlive": pb.KeepAliveRequest(session_id=sid),
        "Acquire": pb.AcquireRequest(session_id=sid, seq=1, name=name),
        "Release": pb.ReleaseRequest(session_id=sid, seq=1, name=name),
        "CloseSession": pb.CloseSessionRequest(session_id=sid, seq=1),
    }
    for method, request in requests.items():
        expect_error(lambda: client.call(method, request), INVALID, "invalid-argument")


def test_a_session_id_in_upper_case_hex_names_the_same_session(client, name):
    s = client.session()
    assert s.acquire(name).acquired
    upper = pb.ReleaseRequest(session_id=s.id.upper(), session_secret=s.secret, seq=99,
                              name=name)
    client.call("Release", upper)
    assert not client.get_lock(name).HasField("lock")


@pytest.mark.parametrize("method", ["AppendEntries", "Vote", "InstallSnapshot"])
@pytest.mark.parametrize("data", [b"", b"\xff" * 64, b"\x01" + b"\x00" * 7 + b"\xff" * 8],
                         ids=["empty", "garbage", "huge-length-prefix"])
def test_the_raft_service_on_the_peer_port_refuses_bytes_that_do_not_decode(
    cluster, method, data
):
    for node in cluster.nodes.values():
        stub = raft_pb_grpc.RaftStub(node.peer_channel)
        request = raft_pb.RaftMessage(data=data)
        expect_error(lambda: getattr(stub, method)(request, timeout=10),
                     INVALID, None)
    # And the cluster is none the worse for it.
    cluster.wait_for_leader()


def test_the_client_port_serves_no_raft_or_membership_calls_and_the_peer_port_no_lock_calls(
    cluster,
):
    unimplemented = grpc.StatusCode.UNIMPLEMENTED
    for node in cluster.nodes.values():
        raft = raft_pb_grpc.RaftStub(node.channel)
        for method in ("AppendEntries", "Vote", "InstallSnapshot", "PreVote"):
            if cluster.secure:
                # Refused before routing: no token authorises a Raft RPC.
                e = expect_error(
                    lambda: getattr(raft, method)(raft_pb.RaftMessage(), timeout=10),
                    grpc.StatusCode.PERMISSION_DENIED, None)
                assert e.details() == (f"/raftlock.raft.v1.Raft/{method} is a Raft RPC "
                                       "between nodes, not served to clients"), e.details()
            else:
                expect_error(lambda: getattr(raft, method)(raft_pb.RaftMessage(), timeout=10),
                             unimplemented, None)
        # An admin (by client certificate) may call the Cluster service,
        # but not on this port.
        membership = pb_grpc.ClusterStub(
            node.open_channel(node.addr, token=node.token("admin"), client_cert="admin"))
        expect_error(lambda: membership.Promote(pb.PromoteRequest(id=99), timeout=10),
                     unimplemented, None)
        lock = pb_grpc.LockStub(node.peer_channel)
        expect_error(lambda: lock.Status(pb.StatusRequest(), timeout=10), unimplemented, None)
        # The peer port serves what the other nodes call.
        peer_membership = pb_grpc.ClusterStub(node.peer_channel)
        expect_error(lambda: peer_membership.AddLearner(pb.AddLearnerRequest(id=0), timeout=10),
                     grpc.StatusCode.INVALID_ARGUMENT, None)


def _field(number: int, data: bytes) -> bytes:
    """One length-delimited protobuf field (short values only)."""
    return bytes([number << 3 | 2, len(data)]) + data


@pytest.mark.parametrize(
    "method, body",
    [
        ("Acquire", _field(1, b"0" * 32) + _field(3, b"bad\xffname")),
        ("Acquire", _field(1, b"\xff" * 32)),
        ("GetLock", _field(1, b"\xfe")),
        ("Release", _field(1, b"abc")[:-1]),
        ("OpenSession", b"\xff\xff\xff"),
    ],
    ids=["name-not-utf8", "session-not-utf8", "get-lock-not-utf8", "truncated", "bad-varint"],
)
def test_a_request_that_does_not_decode_is_an_error_and_the_node_serves_on(cluster, method, body):
    # The doc names no code for this; any status will do, as long as it is
    # an answer (not a hang, not a stream reset by a handler that died)
    # and the node goes on serving.
    for node in cluster.nodes.values():
        raw = node.channel.unary_unary(f"/raftlock.v1.Lock/{method}")
        with pytest.raises(grpc.RpcError) as caught:
            raw(body, timeout=10)
        e = caught.value
        assert e.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED), e
        assert "RST_STREAM" not in (e.details() or ""), e
    for node in cluster.nodes.values():
        assert node.status().id == node.id
    cluster.wait_for_leader()
