"""asyncio support: ``async with client.lock(...)`` does not block the event
loop, and cancelling a waiting task leaves the queue for good."""

from __future__ import annotations

import asyncio
import time

import pytest

import raftlock


def test_async_with_acquires_and_releases(client, name):
    async def main() -> int:
        async with client.lock(name) as held:
            assert held.locked()
            return held.token

    token = asyncio.run(main())
    assert token > 0
    assert client.lock_info(name) is None


def test_waiting_does_not_block_the_event_loop(client, other_client, name):
    held = client.lock(name)
    held.acquire()

    async def main() -> tuple:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        loop = asyncio.get_running_loop()
        loop.call_later(0.5, held.release)
        started = time.monotonic()
        async with other_client.lock(name, timeout=20) as mine:
            waited = time.monotonic() - started
            token = mine.token
        tick_task.cancel()
        return ticks, waited, token

    ticks, waited, token = asyncio.run(main())
    assert waited >= 0.4
    assert ticks >= 20, ticks
    assert token > 0


def test_cancelling_a_waiting_task_leaves_the_queue(client, other_client, name):
    async def main() -> None:
        with client.lock(name):
            lock = other_client.lock(name)
            task = asyncio.create_task(lock.acquire_async())
            await asyncio.sleep(0.5)
            info = client.lock_info(name)
            assert [w.label for w in info.waiters] == ["pytest other"]
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not lock.locked()
            assert client.lock_info(name).waiters == ()
        # Released: the cancelled waiter was not granted it behind our back.
        await asyncio.sleep(0.3)
        assert client.lock_info(name) is None

    asyncio.run(main())
