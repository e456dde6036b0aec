"""ListLocks in pages (docs/protocol.md, "ListLocks"): a page holds at most
the requested limit, capped by the server's largest page (1000 by
default); following next_page_token returns every name under the prefix
exactly once, in byte order; a prefix over 512 bytes, or a token from
another prefix, is INVALID_ARGUMENT."""

from __future__ import annotations

import grpc

from support import expect_error, pb

SERVER_MAX_PAGE = 1000


def hold(client, names, sessions=20):
    """Holds every name, one Acquire per session in flight at a time (so
    no session's seq falls out of its retry window)."""
    holders = [client.session() for _ in range(sessions)]
    for start in range(0, len(names), sessions):
        batch = names[start:start + sessions]
        futures = [
            client.future("Acquire", s.acquire_request(n)) for s, n in zip(holders, batch)
        ]
        assert all(f.result().acquired for f in futures)


def list_page(client, prefix, limit=0, token=""):
    return client.call(
        "ListLocks", pb.ListLocksRequest(prefix=prefix, limit=limit, page_token=token)
    )


def pages(client, prefix, limit):
    """Every page of the listing: (names, truncated, next_page_token) each."""
    token, seen = "", []
    while True:
        reply = list_page(client, prefix, limit, token)
        seen.append(([i.name for i in reply.locks], reply.truncated, reply.next_page_token))
        if not reply.next_page_token:
            return seen
        token = reply.next_page_token


def test_following_page_tokens_lists_each_name_once_in_byte_order(client, name):
    prefix = f"{name}/"
    names = [f"{prefix}{i}" for i in range(30)] + [f"{prefix}é", f"{prefix}B"]
    hold(client, names + [f"{name}-sibling"])
    seen = pages(client, prefix, limit=7)
    assert [len(p[0]) for p in seen] == [7, 7, 7, 7, 4]
    # truncated is set exactly when another page follows.
    assert [bool(p[2]) for p in seen] == [p[1] for p in seen] == [True] * 4 + [False]
    listed = [n for p in seen for n in p[0]]
    assert listed == sorted(names, key=lambda n: n.encode())


def test_a_page_above_the_servers_largest_is_cut_to_it(client, name):
    prefix = f"{name}/"
    names = sorted((f"{prefix}{i:05}" for i in range(SERVER_MAX_PAGE + 5)))
    hold(client, names)
    for limit in (0, 2**32 - 1):
        first = list_page(client, prefix, limit)
        assert len(first.locks) == SERVER_MAX_PAGE and first.truncated
        assert first.next_page_token
        rest = list_page(client, prefix, limit, first.next_page_token)
        assert [i.name for i in first.locks] + [i.name for i in rest.locks] == names
        assert not rest.truncated and rest.next_page_token == ""


def test_a_long_prefix_or_a_foreign_token_is_an_invalid_argument(cluster, client, name):
    hold(client, [f"{name}/a", f"{name}/b"], sessions=2)
    first = list_page(client, f"{name}/", limit=1)
    assert first.next_page_token
    expect_error(lambda: list_page(client, "x" * 513), grpc.StatusCode.INVALID_ARGUMENT,
                 "invalid-argument")
    expect_error(lambda: list_page(client, f"{name}-other/", 1, first.next_page_token),
                 grpc.StatusCode.INVALID_ARGUMENT, "invalid-argument")
    # The longest name is a valid prefix.
    assert list(list_page(client, "x" * 512).locks) == []

    def long_watch():
        call = cluster.leader().stub.Watch(pb.WatchRequest(prefix="x" * 513), timeout=10)
        return next(iter(call))
    expect_error(long_watch, grpc.StatusCode.INVALID_ARGUMENT, "invalid-argument")
