"""``client.watch(prefix)``: the state first, then each change once, in log
order, through a leader crash; ``close()`` ends the iteration."""

from __future__ import annotations

import threading
import time

import raftlock


def _until(watch: raftlock.Watch, kind: str, name: str, timeout: float = 20.0) -> raftlock.WatchEvent:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = watch.next(timeout=1.0)
        if event is not None and event.kind == kind and event.name == name:
            return event
    raise AssertionError(f"no {kind} of {name} within {timeout} s")


def test_state_then_changes(client, name):
    prefix = name + "/"
    held = client.lock(prefix + "a", blocking=False)
    token = held.acquire()
    with client.watch(prefix) as watch:
        reset = watch.next(timeout=10)
        assert reset is not None and reset.kind == "reset" and not reset.resync
        state = watch.next(timeout=10)
        assert state is not None and state.state and state.kind == "granted"
        assert (state.name, state.token, state.mode) == (prefix + "a", token, "exclusive")
        assert state.session_id == held.session_id
        synced = watch.next(timeout=10)
        assert synced is not None and synced.kind == "synced"
        assert synced.index == reset.index >= token

        held.release()
        released = watch.next(timeout=10)
        assert released is not None and released.kind == "released"
        assert (released.name, released.token, released.state) == (prefix + "a", token, False)
        assert released.index > synced.index
        # Locks outside the prefix are not watched.
        with client.lock(name + "-other", blocking=False):
            pass
        assert watch.next(timeout=0.5) is None


def test_close_ends_a_waiting_iteration(client, name):
    watch = client.watch(name + "/")
    seen = []

    def read() -> None:
        for event in watch:
            seen.append(event)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.5)
    watch.close()
    reader.join(timeout=5)
    assert not reader.is_alive()
    assert [e.kind for e in seen] == ["reset", "synced"]


def test_a_watch_follows_through_a_leader_kill(fresh_cluster, name):
    leader = fresh_cluster.wait_for_leader()
    # The watcher enters at the leader, so the kill breaks its stream.
    first = fresh_cluster.endpoints[leader - 1 :] + fresh_cluster.endpoints[: leader - 1]
    watcher = raftlock.Client(first, **fresh_cluster.client_kwargs())
    worker = fresh_cluster.client()
    watch = watcher.watch(name)
    assert watch.next(timeout=10).kind == "reset"
    assert watch.next(timeout=10).kind == "synced"
    tokens = []
    for i in range(6):
        if i == 3:
            fresh_cluster.kill(leader)
        with worker.lock(name, blocking=False) as held:
            tokens.append(held.token)
    seen = []
    for token in tokens:
        granted = _until(watch, "granted", name)
        released = _until(watch, "released", name)
        seen.append((granted.token, released.token))
    assert seen == [(t, t) for t in tokens]
    # Nothing repeated after the resume.
    assert watch.next(timeout=1.0) is None
    watch.close()
    watcher.close()
    worker.close()
