"""Event listeners: Redis pub/sub wakes waiters; the embedded setup polls."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from kai.config import Settings
from kai.jobs.announcements import (
    PollingEventListener,
    RedisAnnouncer,
    RedisEventListener,
    create_announcer,
    create_event_listener,
)
from kai.jobs.context import SilentAnnouncer

REDIS_SERVER = "redis://127.0.0.1:6379"


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = f"{REDIS_SERVER}/{random.randint(1, 15)}"
    try:
        redis.Redis.from_url(url).ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {url}: {exc}")
    yield url


def test_embedded_setup_polls(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, poll_seconds=0.01)

    listener = create_event_listener(settings)

    assert isinstance(listener, PollingEventListener)
    assert isinstance(create_announcer(settings), SilentAnnouncer)
    asyncio.run(listener.wait(1, timeout=30))


@pytest.mark.services
def test_redis_listener_wakes_the_waiters_of_the_announced_job(
    data_dir: Path, redis_url: str
) -> None:
    settings = Settings(data_dir=data_dir, broker_url=redis_url, poll_seconds=0.05)
    announcer = create_announcer(settings)
    assert isinstance(announcer, RedisAnnouncer)
    job_id, other_id = random.sample(range(10**8, 10**9), 2)

    async def scenario() -> None:
        listener = create_event_listener(settings)
        assert isinstance(listener, RedisEventListener)
        try:
            for _ in range(200):
                await listener.wait(job_id, timeout=0.05)
                if listener.is_connected:
                    break
            assert listener.is_connected

            woken = asyncio.create_task(listener.wait(job_id, timeout=60))
            untouched = asyncio.create_task(listener.wait(other_id, timeout=60))
            await asyncio.sleep(0.1)
            announcer.announce(job_id)
            await asyncio.wait_for(woken, timeout=10)
            assert not untouched.done()

            announcer.announce(other_id)
            await asyncio.wait_for(untouched, timeout=10)
        finally:
            await listener.close()

    try:
        asyncio.run(scenario())
    finally:
        announcer.close()
