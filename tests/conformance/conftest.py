"""pytest fixtures for the protocol conformance suite (helpers in
support.py): one 3-node cluster shared by the tests that leave its nodes
running, a client for it, and lock names no other test uses."""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from support import Client, Cluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """One cluster for every test that leaves its nodes running."""
    c = Cluster()
    yield c
    c.stop()


@pytest.fixture
def client(cluster: Cluster) -> Client:
    return Client(cluster)


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A lock name no other test uses."""
    return f"conformance/{request.node.name}/{time.time_ns()}"
