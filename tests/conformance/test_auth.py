"""Authentication and authorisation on the wire (docs/security.md): a call
without a token, or with one the cluster never issued, is UNAUTHENTICATED;
a principal's role bounds what it may call, on either port; plain text
does not reach a TLS port; Raft RPCs need a member's node certificate; a
session answers only to the principal that opened it, whatever the other
principal knows of it; no token reaches a log; a client certificate
authenticates only a principal allowed one. Only on a secured cluster (the
default; skipped with RAFTLOCK_TEST_INSECURE=1)."""

from __future__ import annotations

import secrets

import grpc
import pytest

from support import Client, Session, expect_error, pb, pb_grpc, raft_pb, raft_pb_grpc

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture(autouse=True)
def _secured(cluster):
    if not cluster.secure:
        pytest.skip("the cluster runs insecure (RAFTLOCK_TEST_INSECURE=1)")


def _no_handshake(call) -> None:
    """The peer port requires a client certificate: without one the TLS
    handshake fails, and the call gets no answer from the server."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value


def _unauthenticated(call) -> None:
    e = expect_error(call, UNAUTHENTICATED, None)
    # Never says whether the token was missing or wrong.
    assert e.details() == "missing or unknown token", e.details()


# Tokens the cluster never issued: well-formed, garbage, and one that only
# differs from a real one in its last character.
WRONG_TOKENS = {
    "random": lambda real: "rlt_" + secrets.token_urlsafe(32),
    "garbage": lambda real: "not a token",
    "one-character-off": lambda real: real[:-1] + ("A" if real[-1] != "A" else "B"),
}


def test_a_call_without_a_token_is_unauthenticated(cluster):
    for node in cluster.nodes.values():
        stub = pb_grpc.LockStub(node.channel_as(None))
        _unauthenticated(lambda: stub.Status(pb.StatusRequest(), timeout=10))
        _unauthenticated(lambda: stub.OpenSession(pb.OpenSessionRequest(ttl_ms=60_000),
                                                  timeout=10))
        peer = pb_grpc.ClusterStub(node.channel_as(None, peer=True))
        _no_handshake(lambda: peer.AddLearner(pb.AddLearnerRequest(id=0), timeout=10))
        # With a token the same node serves: the token is what was missing.
        assert node.status().id == node.id


@pytest.mark.parametrize("wrong", list(WRONG_TOKENS), ids=list(WRONG_TOKENS))
def test_a_call_with_a_wrong_token_is_unauthenticated(cluster, wrong):
    token = WRONG_TOKENS[wrong](cluster.credentials.tokens["admin"])
    for node in cluster.nodes.values():
        stub = pb_grpc.LockStub(node.open_channel(node.addr, token=token))
        _unauthenticated(lambda: stub.Status(pb.StatusRequest(), timeout=10))
        _unauthenticated(lambda: stub.GetLock(pb.GetLockRequest(name="x"), timeout=10))
        peer = pb_grpc.ClusterStub(node.open_channel(node.peer_addr, token=token))
        _no_handshake(lambda: peer.AddLearner(pb.AddLearnerRequest(id=0), timeout=10))


def test_a_read_principal_reads_but_may_not_lock(cluster, client, name):
    holder = client.session()
    assert holder.acquire(name).acquired
    reader = Client(cluster, principal="reader")
    # What role read allows ...
    assert reader.get_lock(name).lock.holder.session_id == holder.id
    assert [i.name for i in reader.call("ListLocks", pb.ListLocksRequest(prefix=name)).locks] \
        == [name]
    assert reader.current.lock_stub("reader").Status(pb.StatusRequest(), timeout=10).id
    # ... and what it does not, naming who was refused and why.
    e = expect_error(lambda: reader.open(), DENIED, None)
    assert e.details() == ('principal "reader" (role read) may not call OpenSession: '
                           "it needs role lock"), e.details()
    # With a session (and its secret) someone else opened: still its role.
    as_reader = Session(reader, holder.id, holder.secret)
    for call, method in [(lambda: as_reader.acquire(name), "Acquire"),
                         (lambda: as_reader.release(name), "Release"),
                         (as_reader.keep_alive, "KeepAlive"),
                         (as_reader.close, "CloseSession")]:
        e = expect_error(call, DENIED, None)
        assert e.details() == (f'principal "reader" (role read) may not call {method}: '
                               "it needs role lock"), e.details()
    assert client.holder_of(name) == holder.id
    holder.close()


def test_a_lock_principal_may_not_change_membership_on_the_peer_port(cluster):
    for node in cluster.nodes.values():
        # Membership goes by client certificate; alice's is from the CA,
        # but alice has role lock.
        as_lock = pb_grpc.ClusterStub(node.open_channel(node.peer_addr, client_cert="alice"))
        for call, method in [
            (lambda: as_lock.AddLearner(pb.AddLearnerRequest(id=0), timeout=10), "AddLearner"),
            (lambda: as_lock.Promote(pb.PromoteRequest(id=0), timeout=10), "Promote"),
        ]:
            e = expect_error(call, DENIED, None)
            assert e.details() == (f'principal "alice" (role lock) may not call {method}: '
                                   "it needs role admin"), e.details()
        # An admin with only a token does not even finish the handshake ...
        token_only = pb_grpc.ClusterStub(node.channel_as("admin", peer=True))
        _no_handshake(lambda: token_only.AddLearner(pb.AddLearnerRequest(id=0), timeout=10))
        # ... with admin's client certificate it gets past the check to
        # the request's own merits: id 0 is not a node id.
        as_admin = pb_grpc.ClusterStub(node.open_channel(node.peer_addr, client_cert="admin"))
        expect_error(lambda: as_admin.AddLearner(pb.AddLearnerRequest(id=0), timeout=10),
                     grpc.StatusCode.INVALID_ARGUMENT, None)


def test_a_plain_text_channel_does_not_reach_a_tls_port(cluster):
    for node in cluster.nodes.values():
        for addr in (node.addr, node.peer_addr):
            with grpc.insecure_channel(addr) as plain:
                stub = pb_grpc.LockStub(plain)
                with pytest.raises(grpc.RpcError) as caught:
                    stub.Status(pb.StatusRequest(), timeout=5)
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value
    cluster.wait_for_leader()


def test_raft_rpcs_need_a_members_node_certificate(cluster):
    outsider = 99  # a certificate from the cluster's CA, for no member
    assert outsider not in cluster.nodes
    for node in cluster.nodes.values():
        callers = {
            "an admin's client certificate": (
                node.open_channel(node.peer_addr, token=cluster.credentials.tokens["admin"],
                                  client_cert="admin"),
                "Raft RPCs need a node certificate"),
            "a client certificate": (node.open_channel(node.peer_addr, client_cert="alice"),
                                     "Raft RPCs need a node certificate"),
            "a non-member's node certificate": (
                node.open_channel(node.peer_addr, node_cert=outsider),
                f"node certificate for {outsider}: not a member"),
        }
        for who, (ch, message) in callers.items():
            raft = raft_pb_grpc.RaftStub(ch)
            for method in ("AppendEntries", "Vote", "InstallSnapshot", "PreVote"):
                e = expect_error(lambda: getattr(raft, method)(raft_pb.RaftMessage(), timeout=10),
                                 DENIED, None)
                assert message in e.details(), (who, method, e.details())
    cluster.wait_for_leader()


def test_a_client_certificate_stands_for_its_principal_only_if_it_may(cluster, name):
    leader = cluster.leader()
    # carol may authenticate with her certificate: no token needed.
    carol = pb_grpc.LockStub(leader.open_channel(leader.addr, client_cert="carol"))
    opened = carol.OpenSession(pb.OpenSessionRequest(ttl_ms=60_000, label="carol"), timeout=10)
    granted = carol.Acquire(pb.AcquireRequest(session_id=opened.session_id, seq=1, name=name,
                                              session_secret=opened.session_secret), timeout=10)
    assert granted.acquired
    # The session is carol's: alice, even with its secret, may not release it.
    as_alice = pb.ReleaseRequest(session_id=opened.session_id, seq=2, name=name,
                                 session_secret=opened.session_secret)
    expect_error(lambda: leader.stub.Release(as_alice, timeout=10), DENIED, "not-session-owner")
    # A token goes first: carol's certificate with reader's token is reader.
    both = pb_grpc.LockStub(leader.open_channel(leader.addr, token=leader.token("reader"),
                                                client_cert="carol"))
    e = expect_error(lambda: both.OpenSession(pb.OpenSessionRequest(ttl_ms=60_000), timeout=10),
                     DENIED, None)
    assert e.details().startswith('principal "reader" (role read)'), e.details()
    # alice was not allowed certificates: hers authenticates nobody.
    alice_cert = pb_grpc.LockStub(leader.open_channel(leader.addr, client_cert="alice"))
    _unauthenticated(lambda: alice_cert.Status(pb.StatusRequest(), timeout=10))
    assert Client(cluster).holder_of(name) == opened.session_id
    carol.CloseSession(pb.CloseSessionRequest(session_id=opened.session_id, seq=3,
                                              session_secret=opened.session_secret), timeout=10)
    assert Client(cluster).holder_of(name) is None


def test_another_principal_cannot_act_as_a_session_it_did_not_open(cluster, client, name):
    owner = client.session(label="alice's")
    granted = owner.acquire(name)
    assert granted.acquired
    bob = Client(cluster, principal="bob")
    # bob is a lock principal with sessions of its own ...
    assert bob.session(label="bob's").acquire(name + "/bob").acquired
    # ... and not alice's: not by its public id, nor with its secret.
    for secret in ("", owner.secret):
        thief = Session(bob, owner.id, secret)
        for what, call in [("Release", lambda: thief.release(name)),
                           ("CloseSession", thief.close),
                           ("KeepAlive", thief.keep_alive),
                           ("Acquire", lambda: thief.acquire(name, seq=1))]:
            e = expect_error(call, DENIED, "not-session-owner")
            assert e.details().startswith(f"session {owner.id} belongs to another caller"), (
                what, e.details())
            assert owner.secret not in e.details()
    info = client.get_lock(name).lock
    assert info.holder.session_id == owner.id
    assert info.holder.fencing_token == granted.fencing_token
    assert bob.get_lock(name).lock.holder.session_id == owner.id
    # The owner is still in charge.
    assert owner.keep_alive().ttl_ms > 0
    owner.release(name)
    assert client.holder_of(name) is None
    owner.close()


def test_no_token_reaches_a_nodes_log(cluster, client, name):
    # Every principal calls, each on both kinds of call it may and may not
    # make, so each token went by the nodes' checks.
    assert client.session().acquire(name).acquired
    for principal in ("bob", "reader", "admin"):
        other = Client(cluster, principal=principal)
        other.get_lock(name)
        try:
            other.open()
        except grpc.RpcError:
            pass
    for node in cluster.nodes.values():
        for principal in ("admin", "alice"):
            membership = pb_grpc.ClusterStub(node.channel_as(principal, peer=True))
            # No certificate: refused in the handshake, the token unsent.
            with pytest.raises(grpc.RpcError):
                membership.AddLearner(pb.AddLearnerRequest(id=0), timeout=10)
    text = "\n".join(
        (cluster.dir / f"node{node_id}.log").read_text(errors="replace")
        for node_id in cluster.nodes
    )
    assert text, "the nodes logged nothing at all"
    for principal, token in cluster.credentials.tokens.items():
        assert token not in text, f"{principal}'s token is in a node's log"
        assert token[4:] not in text, f"{principal}'s token (without rlt_) is in a node's log"
