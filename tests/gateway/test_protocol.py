"""Every reply of both dialects over a real ZeroMQ REQ socket, the cases
that crashed the original servers, hostile input, and --reply-token
against what `raftlock locks` shows."""

from __future__ import annotations

import socket

import zmq

from gateway_support import Gateway, wait_until


def test_post_dialect(gateway, name):
    assert gateway.request("PING") == "PONG"
    assert gateway.request(f"LOCK:{name}:alice__1") == "GO"
    assert gateway.request(f"LOCK:{name}:bob__2") == "WAIT"
    # The holder asking again: the post's server said WAIT, and so do we.
    assert gateway.request(f"LOCK:{name}:alice__1") == "WAIT"
    # bob was queued: refused, and out of the queue.
    assert gateway.request(f"UNLOCK:{name}:bob__2") == (
        f"RELEASE_ERROR:Lock `{name}` was acquired by `alice__1` and not by `bob__2` "
        "(client id `bob__2`); `bob__2` was waiting for it and has left the queue")
    wait_until("bob left the queue", lambda: gateway.locks(name)[0]["waiters"] == [])
    assert gateway.request(f"UNLOCK:{name}:alice__1") == "UNLOCKED"
    assert gateway.request(f"LOCK:{name}:bob__2") == "GO"
    assert gateway.request(f"UNLOCK:{name}:bob__2") == "UNLOCKED"
    # An UNLOCK of a lock nobody holds: a KeyError crash in the post's server.
    assert gateway.request(f"UNLOCK:{name}:bob__2") == (
        f"RELEASE_ERROR:Lock `{name}` cannot be found in database (client id `bob__2`)")
    # A `:` in the name: a ValueError crash in the post's server.
    assert gateway.request("LOCK:a:b:carol__3").startswith(
        "MSG_ERROR:Request `LOCK:a:b:carol__3` has 4 fields")
    assert gateway.request("LOCK") == "MSG_ERROR:Please provide name and id for locking"
    assert gateway.request("UNLOCK::x") == "MSG_ERROR:Please provide name and id for unlocking"
    assert gateway.request("HELLO") == "MSG_ERROR:MSG `HELLO` not understood"
    assert gateway.request("DONE") == "CLOSE:Closing Lock Server"
    assert gateway.alive()


def test_pypet_dialect(gateway, name):
    def req(command, client, rid="1.5"):
        return gateway.request(f"{command}:::{name}:::{client}:::{rid}")

    assert req("PING", "a__1") == "PONG"
    assert req("LOCK", "a__1") == "GO"
    assert req("LOCK", "b__2") == "WAIT"
    assert req("LOCK", "a__1", "2.5") == (
        f"LOCK_ERROR:::Re-request of lock `{name}` by `a__1`, which holds it "
        "(client id `a__1`, request id `2.5`)")
    assert req("UNLOCK", "b__2").startswith(
        f"RELEASE_ERROR:::Lock `{name}` was acquired by `a__1` and not by `b__2`")
    assert req("UNLOCK", "a__1") == "RELEASED"
    assert req("LOCK", "b__2") == "GO"
    assert req("UNLOCK", "b__2") == "RELEASED"
    assert req("UNLOCK", "b__2", "9") == (
        f"RELEASE_ERROR:::Lock `{name}` cannot be found in database "
        "(client id `b__2`, request id `9`)")
    assert gateway.request("LOCK:::x:::y") == (
        "MSG_ERROR:::Request `LOCK:::x:::y` not understood (or wrong number of delimiters)")
    assert req("DONE", "a__1") == "CLOSED"
    assert gateway.alive()


def test_a_waiter_that_unlocks_leaves_the_queue(gateway, name):
    assert gateway.request(f"LOCK:{name}:a__1") == "GO"
    assert gateway.request(f"LOCK:{name}:b__2") == "WAIT"
    assert gateway.request(f"LOCK:{name}:c__3") == "WAIT"
    assert gateway.request(f"UNLOCK:{name}:b__2").startswith("RELEASE_ERROR:")
    assert gateway.request(f"UNLOCK:{name}:a__1") == "UNLOCKED"
    # c is next, not b, which left the queue.
    assert gateway.request(f"LOCK:{name}:c__3") == "GO"
    assert gateway.request(f"UNLOCK:{name}:c__3") == "UNLOCKED"


def test_hostile_messages_get_error_replies(gateway):
    assert gateway.request(b"LOCK:\xff\xfe:id").startswith("MSG_ERROR:Request `LOCK:")
    assert gateway.request(b"LOCK:::\xc0:::id:::1").startswith("MSG_ERROR:::Request `")
    assert gateway.request(b"A" * (4 << 20)) == (
        "MSG_ERROR:Request starting `" + "A" * 64 + "` not understood: over the "
        "2048-byte limit")
    assert gateway.request(b"") == "MSG_ERROR:MSG `` not understood"
    # A multipart request.
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(gateway.url)
    sock.send_multipart([b"PING", b"PING"])
    assert sock.poll(10_000)
    assert sock.recv() == b"MSG_ERROR:Request starting `PING` not understood: a request is one frame"
    sock.close()
    # Bytes that are not ZeroMQ at all, and a frame claiming 2^62 bytes.
    host, port = gateway.url[len("tcp://"):].rsplit(":", 1)
    for junk in [b"GET / HTTP/1.1\r\n\r\n" * 8, b"\xff" + b"\0" * 8 + b"\x7f\x03\x00NULL"
                 + b"\0" * 48 + b"\x04\x19\x05READY\x0bSocket-Type\0\0\0\x03REQ"
                 + b"\x02" + (1 << 62).to_bytes(8, "big") + b"xyz"]:
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.settimeout(10)
            try:
                raw.sendall(junk)
                raw.shutdown(socket.SHUT_WR)
                while raw.recv(4096):
                    pass  # until the gateway hangs up
            except (ConnectionResetError, BrokenPipeError, OSError):
                pass  # it hung up first, with our bytes unread
    assert gateway.alive()


def test_reply_token_is_the_token_raftlock_locks_shows(cluster, name):
    gateway = Gateway(cluster, extra=("--reply-token",))
    try:
        reply = gateway.request(f"LOCK:::{name}:::tok__1:::1")
        assert reply.startswith("GO:::"), reply
        token = int(reply[len("GO:::"):])
        [row] = gateway.locks(name)
        assert (row["name"], row["holder"], row["token"]) == (name, "tok__1", token)
        assert gateway.grants(name) == [("tok__1", token)]
        # The post's client compares the reply with "GO": its dialect keeps it.
        other = name.replace("gateway/", "gateway-post/")
        assert gateway.request(f"LOCK:{other}:tok__1") == "GO"
        assert gateway.request(f"UNLOCK:{other}:tok__1") == "UNLOCKED"
        assert gateway.request(f"UNLOCK:::{name}:::tok__1:::2") == "RELEASED"
        assert gateway.locks(name) == []
    finally:
        gateway.stop()


def test_done_stops_the_gateway_only_when_allowed(cluster, name):
    gateway = Gateway(cluster, extra=("--allow-done",))
    try:
        assert gateway.request(f"LOCK:{name}:d__1") == "GO"
        assert gateway.request("DONE") == "CLOSE:Closing Lock Server"
        assert gateway.proc.wait(timeout=30) == 0
        # Its clients' locks were released on the way out.
        assert gateway.locks(name) == []
    finally:
        gateway.stop()
