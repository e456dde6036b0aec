"""pytest fixtures for the gateway suite (helpers in gateway_support.py):
one 3-node cluster for the whole suite and gateways in front of it."""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from gateway_support import Cluster, Gateway


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.stop()


@pytest.fixture
def gateway(cluster: Cluster) -> Iterator[Gateway]:
    """A gateway on a free port, with the default client TTL."""
    g = Gateway(cluster)
    yield g
    g.stop()


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A lock name no other test uses (no `:`, so both dialects can say it)."""
    return f"gateway/{request.node.name}/{time.time_ns()}".replace("[", "-").replace("]", "")
