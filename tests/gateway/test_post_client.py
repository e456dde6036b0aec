"""The original post's client and 16-job test, copied verbatim into
fixtures/, run against the gateway on the port the post's client has built
in: every "This is a sequential block by N" must come out whole."""

from __future__ import annotations

import time

import pytest

from gateway_support import Gateway, PostRun, check_blocks, fixed_port_7899

LOCK = "_DEFAULT_"


@pytest.fixture
def post_gateway(cluster):
    with fixed_port_7899():
        g = Gateway(cluster, url="tcp://127.0.0.1:7899")
        try:
            yield g
        finally:
            g.stop()


def check_grants(gateway: Gateway, jobs: int) -> None:
    """Each job was granted the lock once, with a token above the last."""
    grants = gateway.grants(LOCK)
    assert len(grants) == jobs, grants
    tokens = [token for _, token in grants]
    assert tokens == sorted(set(tokens)), f"tokens not strictly increasing: {tokens}"


def test_post_client_16_jobs(post_gateway):
    started = time.monotonic()
    output = PostRun().finish()
    check_blocks(output, 16)
    check_grants(post_gateway, 16)
    # The post's run ends with DONE; the gateway answered it and stays up.
    assert post_gateway.alive()
    print(f"16 jobs in {time.monotonic() - started:.1f} s")


def test_post_client_16_jobs_with_a_leader_kill_halfway(cluster, post_gateway):
    run = PostRun()
    deadline = time.monotonic() + 120
    while run.blocks_done() < 8:
        assert run.proc.poll() is None or run.blocks_done() >= 8, "run ended early"
        assert time.monotonic() < deadline, f"8 blocks not done: {run.lines}"
        time.sleep(0.01)
    leader = cluster.leader()
    cluster.kill(leader.id)
    try:
        output = run.finish()
        check_blocks(output, 16)
        check_grants(post_gateway, 16)
        assert post_gateway.alive()
    finally:
        cluster.start(leader.id)
        cluster.wait_for_leader()


def test_check_blocks_catches_an_overlap():
    """The check above can fail: two blocks interleaved."""
    good = ["This", "is", "a", "sequential", "block", "by 0", "_IN",
            "This_BY 7", "", "is", "a", "sequential", "block", "by 1"]
    check_blocks("\n".join(good), 2)
    bad = ["This", "is", "This", "a", "sequential", "block", "by 0",
           "is", "a", "sequential", "block", "by 1"]
    with pytest.raises(AssertionError):
        check_blocks("\n".join(bad), 2)
    with pytest.raises(AssertionError):
        check_blocks("\n".join(good[:6]), 2)
    merged = ["This", "is", "a", "sequential", "block", "by 0",
              "Thisis", "", "a", "sequential", "block", "by 1"]
    with pytest.raises(AssertionError):
        check_blocks("\n".join(merged), 2)
