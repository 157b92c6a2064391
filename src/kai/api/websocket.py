"""The WebSocket hub at ``/ws/training``: live job events for any job type.

Protocol: the client sends ``{"type": "subscribe", "jobId": N}`` (with an
optional ``afterSeq``); the server replays the job's stored events after that
``seq``, then sends live ones as they are committed, each carrying ``seq``,
``jobId`` and ``type`` (``progress``, ``metrics``, ``log``, ``completed``,
``error``, ...). ``{"type": "unsubscribe", "jobId": N}`` stops a job's stream
and ``{"type": "ping"}`` is answered with ``{"type": "pong"}``. Problems with
a request are answered ``{"type": "error", "error": "..."}`` without ``seq``.

The database is the buffer: each subscription reads its events in batches
and pushes them into the connection's bounded outgoing queue. When a reader
is so slow that the queue stays full for ``slow_reader_grace_seconds``, the
hub closes that connection with code 1013 and frees it, so memory per
connection never grows past the queue.

A connection is authenticated (bearer token in the ``Authorization`` header
or the ``token`` query parameter, or the session cookie) and its ``Origin``
checked against the request's own host and ``allowed_origins`` before it is
accepted; a refusal closes it with code 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy import select

from kai.accounts import resolve_token, resolve_web_session
from kai.api.dependencies import SESSION_COOKIE, bearer_token
from kai.db.tables import FINISHED_STATES, Job, JobState
from kai.errors import NotAuthenticated
from kai.jobs.announcements import EventListener
from kai.jobs.events import event_message, list_events
from kai.runtime import Runtime

logger = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
OUTGOING_QUEUE_SIZE = 256
SLOW_READER_GRACE_SECONDS = 5.0
EVENT_BATCH_SIZE = 200
MAX_SUBSCRIPTIONS = 64
MAX_WAIT_SECONDS = 2.0
CLOSE_TIMEOUT_SECONDS = 10.0

router = APIRouter()


@router.websocket("/ws/training")
async def training_events(websocket: WebSocket) -> None:
    """Stream job events to a subscriber; see the module docstring for the protocol."""
    hub: TrainingHub = websocket.app.state.hub
    await hub.serve(websocket)


@dataclass(eq=False)
class _Connection:
    websocket: WebSocket
    user_id: int
    outgoing: asyncio.Queue[dict[str, Any]]
    subscriptions: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)


class TrainingHub:
    """Serves ``/ws/training`` connections and keeps count of them.

    Args:
        runtime: Settings and database of the app.
        listener: Wakes subscriptions when their job announces events.
        queue_size: Messages a connection may have waiting to be sent.
        slow_reader_grace_seconds: How long a full queue is tolerated.
    """

    def __init__(
        self,
        runtime: Runtime,
        listener: EventListener,
        *,
        queue_size: int = OUTGOING_QUEUE_SIZE,
        slow_reader_grace_seconds: float = SLOW_READER_GRACE_SECONDS,
    ) -> None:
        self._runtime = runtime
        self._listener = listener
        self._queue_size = queue_size
        self._grace_seconds = slow_reader_grace_seconds
        self._connections: set[_Connection] = set()

    @property
    def connection_count(self) -> int:
        """How many connections are open now."""
        return len(self._connections)

    async def serve(self, websocket: WebSocket) -> None:
        """Check, accept and serve one connection until either side ends it."""
        try:
            user_id = await self._admit(websocket)
        except NotAuthenticated as exc:
            logger.info("Refused a WebSocket connection: %s", exc.message)
            await websocket.close(code=POLICY_VIOLATION, reason=exc.message)
            return
        await websocket.accept()
        connection = _Connection(websocket, user_id, asyncio.Queue(self._queue_size))
        self._connections.add(connection)
        try:
            await self._run(connection)
        finally:
            self._connections.discard(connection)
            await _cancel_all(connection.subscriptions.values())

    async def _admit(self, websocket: WebSocket) -> int:
        if not origin_allowed(websocket, self._runtime.settings.allowed_origins):
            # The origin itself is left out: a close reason may carry at most 123 bytes.
            logger.info("WebSocket origin not allowed: %.200s", websocket.headers.get("origin"))
            raise NotAuthenticated("Origin not allowed; see KAI_ALLOWED_ORIGINS")
        user_id: int = await anyio.to_thread.run_sync(self._authenticate, websocket)
        return user_id

    def _authenticate(self, websocket: WebSocket) -> int:
        token = bearer_token(websocket.headers.get("authorization"))
        token = token or websocket.query_params.get("token")
        cookie = websocket.cookies.get(SESSION_COOKIE)
        with self._runtime.db.session() as session:
            if token:
                return resolve_token(session, token).id
            if cookie:
                return resolve_web_session(session, cookie)[1].id
        raise NotAuthenticated("Sign in first: send a bearer token or the session cookie")

    async def _run(self, connection: _Connection) -> None:
        tasks = [
            asyncio.create_task(self._send_loop(connection)),
            asyncio.create_task(self._receive_loop(connection)),
            asyncio.create_task(connection.overflowed.wait()),
        ]
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        await _cancel_all(tasks)
        await _cancel_all(connection.subscriptions.values())
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                logger.debug("WebSocket connection ended: %r", task.exception())
        if connection.overflowed.is_set():
            await self._close_slow(connection)

    async def _close_slow(self, connection: _Connection) -> None:
        logger.warning(
            "Closing a WebSocket whose reader fell %d messages behind",
            self._queue_size,
            extra={"user_id": connection.user_id},
        )
        # Free the connection first: the close frame waits behind the unread data.
        self._connections.discard(connection)
        # The peer may be gone already; there is nothing left to tell it then.
        with contextlib.suppress(Exception), anyio.move_on_after(CLOSE_TIMEOUT_SECONDS):
            await connection.websocket.close(code=TRY_AGAIN_LATER, reason="Reader too slow")

    async def _send_loop(self, connection: _Connection) -> None:
        while True:
            message = await connection.outgoing.get()
            await connection.websocket.send_text(json.dumps(message, default=str))

    async def _receive_loop(self, connection: _Connection) -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                text = await connection.websocket.receive_text()
                self._handle_request(connection, text)

    def _handle_request(self, connection: _Connection, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            self._offer(connection, _error("Messages must be JSON objects"))
            return
        kind = request.get("type") if isinstance(request, dict) else None
        job_id = request.get("jobId") if isinstance(request, dict) else None
        if kind == "ping":
            self._offer(connection, {"type": "pong"})
        elif kind not in ("subscribe", "unsubscribe"):
            self._offer(connection, _error(f"Unknown message type {kind!r}"))
        elif not isinstance(job_id, int) or isinstance(job_id, bool):
            self._offer(connection, _error(f"{kind} needs an integer jobId"))
        elif kind == "unsubscribe":
            task = connection.subscriptions.pop(job_id, None)
            if task is not None:
                task.cancel()
        else:
            self._subscribe(connection, job_id, request.get("afterSeq", 0))

    def _subscribe(self, connection: _Connection, job_id: int, after_seq: Any) -> None:
        if not isinstance(after_seq, int) or isinstance(after_seq, bool) or after_seq < 0:
            self._offer(connection, _error("afterSeq must be a non-negative integer", job_id))
            return
        live = {key: task for key, task in connection.subscriptions.items() if not task.done()}
        connection.subscriptions = live
        if job_id in live:
            live.pop(job_id).cancel()
        if len(live) >= MAX_SUBSCRIPTIONS:
            self._offer(connection, _error(f"At most {MAX_SUBSCRIPTIONS} jobs per connection"))
            return
        task = asyncio.create_task(self._follow(connection, job_id, after_seq))
        connection.subscriptions[job_id] = task

    async def _follow(self, connection: _Connection, job_id: int, after_seq: int) -> None:
        try:
            await self._stream(connection, job_id, after_seq)
        except Exception:
            logger.exception("Streaming events failed", extra={"job_id": job_id})
            self._offer(connection, _error(f"Streaming events of job {job_id} failed", job_id))

    async def _stream(self, connection: _Connection, job_id: int, after_seq: int) -> None:
        cursor = after_seq
        while True:
            state, messages = await anyio.to_thread.run_sync(self._read, job_id, cursor)
            if state is None:
                self._offer(connection, _error(f"Job {job_id} not found", job_id))
                return
            for message in messages:
                if not await self._push(connection, message):
                    return
                cursor = message["seq"]
            if len(messages) == EVENT_BATCH_SIZE:
                continue
            if state in FINISHED_STATES:
                return
            await self._listener.wait(job_id, MAX_WAIT_SECONDS)

    def _read(self, job_id: int, after_seq: int) -> tuple[JobState | None, list[dict[str, Any]]]:
        # The state is read before the events: when it says finished, every event is visible.
        with self._runtime.db.session() as session:
            state = session.scalar(select(Job.state).where(Job.id == job_id))
            if state is None:
                return None, []
            events = list_events(session, job_id, after_seq=after_seq, limit=EVENT_BATCH_SIZE)
            return state, [event_message(event) for event in events]

    async def _push(self, connection: _Connection, message: dict[str, Any]) -> bool:
        try:
            await asyncio.wait_for(connection.outgoing.put(message), self._grace_seconds)
        except TimeoutError:
            connection.overflowed.set()
            return False
        return True

    def _offer(self, connection: _Connection, message: dict[str, Any]) -> None:
        try:
            connection.outgoing.put_nowait(message)
        except asyncio.QueueFull:
            connection.overflowed.set()

    async def close(self) -> None:
        """Close every connection; called when the app shuts down."""
        for connection in list(self._connections):
            await _cancel_all(connection.subscriptions.values())
            with contextlib.suppress(Exception), anyio.move_on_after(1.0):
                await connection.websocket.close(code=1001, reason="Server shutting down")
        self._connections.clear()


def origin_allowed(websocket: WebSocket, allowed_origins: list[str]) -> bool:
    """Whether a browser's ``Origin`` is the server's own host or an allowed origin.

    Clients other than browsers send no ``Origin``; they are let through to
    authentication, which they must pass like everyone else.
    """
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    host = websocket.headers.get("host", "")
    if host and urlsplit(origin).netloc.lower() == host.lower():
        return True
    allowed = {candidate.rstrip("/").lower() for candidate in allowed_origins}
    return origin.rstrip("/").lower() in allowed


def _error(text: str, job_id: int | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "error", "error": text}
    if job_id is not None:
        message["jobId"] = job_id
    return message


async def _cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    # asyncio.wait, unlike gather, lets an outer cancellation through unchanged.
    if pending:
        await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled() and task.exception() is not None:
            logger.debug("WebSocket task ended with %r", task.exception())
