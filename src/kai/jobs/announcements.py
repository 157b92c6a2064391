"""Waking event listeners: Redis pub/sub in the distributed setup, polling otherwise.

Events are always read from the database; an announcement only says "job N
has new events" so a WebSocket subscriber need not wait for its next poll.
Whoever commits an event announces it on ``channel_for(job_id)``; any API
replica listening on Redis wakes the subscribers of that job. When Redis is
unreachable, or the setup has none, listeners fall back to short polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

import redis
import redis.asyncio as aioredis

from kai.config import Settings
from kai.jobs.context import EventAnnouncer, SilentAnnouncer
from kai.jobs.events import CHANNEL_PREFIX, channel_for

__all__ = [
    "EventListener",
    "PollingEventListener",
    "RedisAnnouncer",
    "RedisEventListener",
    "create_announcer",
    "create_event_listener",
    "redis_url_of",
]

logger = logging.getLogger(__name__)

REDIS_SCHEMES = ("redis://", "rediss://")
SOCKET_TIMEOUT_SECONDS = 2.0
RECONNECT_SECONDS = 2.0


def redis_url_of(settings: Settings) -> str | None:
    """The Redis URL that carries announcements, when the broker is Redis."""
    url = settings.broker_url
    if url and url.startswith(REDIS_SCHEMES):
        return url
    # TODO: announce over RabbitMQ too, when a deployment runs an amqp broker without Redis.
    return None


class RedisAnnouncer:
    """Publishes "job N has new events" on Redis; a failure only delays listeners."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        )
        self._failing = False

    def announce(self, job_id: int) -> None:
        try:
            self._client.publish(channel_for(job_id), "1")
        except redis.RedisError as exc:
            # Listeners still see the event at their next poll; warn once per outage.
            level = logging.DEBUG if self._failing else logging.WARNING
            logger.log(level, "Could not announce job events: %s", exc, extra={"job_id": job_id})
            self._failing = True
            return
        self._failing = False

    def close(self) -> None:
        """Close the Redis connections."""
        self._client.close()


def create_announcer(settings: Settings) -> EventAnnouncer:
    """A Redis announcer in the distributed setup, a silent one in the embedded one."""
    url = redis_url_of(settings)
    return RedisAnnouncer(url) if url else SilentAnnouncer()


class EventListener(Protocol):
    """Lets a WebSocket subscriber sleep until its job may have new events."""

    async def wait(self, job_id: int, timeout: float) -> None:
        """Return when the job announces events, or after at most ``timeout`` seconds."""

    async def close(self) -> None:
        """Stop listening and release connections."""


class PollingEventListener:
    """For the embedded setup: every wait is a short sleep before the next read."""

    def __init__(self, poll_seconds: float) -> None:
        self._poll_seconds = poll_seconds

    async def wait(self, job_id: int, timeout: float) -> None:
        await asyncio.sleep(max(0.0, min(timeout, self._poll_seconds)))

    async def close(self) -> None:
        return None


class RedisEventListener:
    """Waits on Redis pub/sub, one pattern subscription shared by all waiters.

    The subscription starts on the first :meth:`wait` inside the running event
    loop. While it is not connected, waits fall back to ``poll_seconds`` sleeps.
    An announcement that arrives between a subscriber's read and its next wait
    is not remembered, so callers pass a timeout of a few seconds at most.
    """

    def __init__(self, url: str, *, poll_seconds: float) -> None:
        self._url = url
        self._poll_seconds = poll_seconds
        self._waiters: dict[int, set[asyncio.Future[None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._connected = False

    @property
    def is_connected(self) -> bool:
        """Whether the pub/sub subscription is live, so waits end on announcements."""
        return self._connected

    async def wait(self, job_id: int, timeout: float) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_forever(), name="kai-event-listener")
        if not self._connected:
            await asyncio.sleep(max(0.0, min(timeout, self._poll_seconds)))
            return

        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(job_id, set())
        waiters.add(future)
        try:
            await asyncio.wait_for(future, max(0.0, timeout))
        except TimeoutError:
            pass
        finally:
            waiters.discard(future)
            if not waiters:
                self._waiters.pop(job_id, None)

    async def close(self) -> None:
        if self._reader is None:
            return
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self._reader = None

    async def _read_forever(self) -> None:
        while True:
            try:
                await self._read_until_broken()
            except (redis.RedisError, OSError) as exc:
                logger.warning("Event listener lost Redis, retrying: %s", exc)
            self._connected = False
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _read_until_broken(self) -> None:
        client = aioredis.Redis.from_url(self._url, socket_connect_timeout=SOCKET_TIMEOUT_SECONDS)
        pubsub = client.pubsub()
        try:
            await pubsub.psubscribe(f"{CHANNEL_PREFIX}*")
            self._connected = True
            logger.info("Listening for job events on Redis")
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                if message is not None:
                    self._wake(message["channel"])
        finally:
            self._connected = False
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
            await client.aclose()

    def _wake(self, channel: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        try:
            job_id = int(name.removeprefix(CHANNEL_PREFIX))
        except ValueError:
            logger.debug("Ignoring announcement on %s", name)
            return
        for future in self._waiters.get(job_id, ()):
            if not future.done():
                future.set_result(None)


def create_event_listener(settings: Settings) -> EventListener:
    """A Redis listener in the distributed setup, a polling one in the embedded one."""
    url = redis_url_of(settings)
    if url:
        return RedisEventListener(url, poll_seconds=settings.poll_seconds)
    return PollingEventListener(settings.poll_seconds)
