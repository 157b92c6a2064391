"""The /ws/training hub: authentication, origin checks, replay then live events, slow readers."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from api.support import ADMIN_PASSWORD, Account, login
from kai.api.websocket import TrainingHub
from kai.db.tables import Job, JobState
from kai.jobs.announcements import PollingEventListener
from kai.jobs.events import append_event
from kai.runtime import Runtime

pytestmark = pytest.mark.db


def make_job(runtime: Runtime, *, state: JobState = JobState.RUNNING) -> int:
    with runtime.db.session() as session:
        job = Job(type="test.any", config={}, state=state)
        session.add(job)
        session.flush()
        return job.id


def emit(runtime: Runtime, job_id: int, event_type: str, **payload: Any) -> int:
    with runtime.db.session() as session:
        return append_event(session, job_id, event_type, payload)


def test_refuses_a_foreign_origin_even_with_a_valid_token(
    client: TestClient, viewer: Account
) -> None:
    headers = {**viewer.headers, "Origin": "https://evil.example"}
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/ws/training", headers=headers),
    ):
        pass
    assert refused.value.code == 1008


def test_refuses_a_bad_token(client: TestClient) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/ws/training?token=kai_forged"),
    ):
        pass
    assert refused.value.code == 1008


def test_accepts_own_origin_and_allowed_origins(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    runtime.settings.allowed_origins = ["https://panel.example"]
    for origin in ("http://testserver", "https://panel.example"):
        headers = {**viewer.headers, "Origin": origin}
        with client.websocket_connect("/ws/training", headers=headers) as ws:
            ws.send_json({"type": "ping"})
            assert ws.receive_json() == {"type": "pong"}


def test_replays_stored_events_then_live_ones(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    job_id = make_job(runtime)
    emit(runtime, job_id, "progress", progress=0.1, currentEpoch=1, totalEpochs=3)
    emit(runtime, job_id, "metrics", epoch=1, metrics={"trainLoss": 0.9})
    with client.websocket_connect(f"/ws/training?token={viewer.token}") as ws:
        ws.send_json({"type": "subscribe", "jobId": job_id})
        first, second = ws.receive_json(), ws.receive_json()
        emit(runtime, job_id, "completed", results={"best": 0.5})
        live = ws.receive_json()
    assert first == {
        "type": "progress",
        "progress": 0.1,
        "currentEpoch": 1,
        "totalEpochs": 3,
        "seq": 1,
        "jobId": job_id,
    }
    assert (second["type"], second["seq"], second["metrics"]) == ("metrics", 2, {"trainLoss": 0.9})
    assert (live["type"], live["seq"], live["results"]) == ("completed", 3, {"best": 0.5})


def test_subscribe_after_seq_skips_what_the_client_has(
    client: TestClient, runtime: Runtime, viewer: Account
) -> None:
    job_id = make_job(runtime, state=JobState.SUCCEEDED)
    for index in range(4):
        emit(runtime, job_id, "log", message=f"line {index}")
    with client.websocket_connect("/ws/training", headers=viewer.headers) as ws:
        ws.send_json({"type": "subscribe", "jobId": job_id, "afterSeq": 2})
        received = [ws.receive_json()["seq"] for _ in range(2)]
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
    assert received == [3, 4]


def test_session_cookie_signs_in_the_browser(client: TestClient, runtime: Runtime) -> None:
    job_id = make_job(runtime)
    emit(runtime, job_id, "progress", progress=0.5)
    login(client, "admin", ADMIN_PASSWORD)
    with client.websocket_connect("/ws/training", headers={"Origin": "http://testserver"}) as ws:
        ws.send_json({"type": "subscribe", "jobId": job_id})
        assert ws.receive_json()["progress"] == 0.5


def test_unknown_job_and_bad_messages_get_errors(client: TestClient, viewer: Account) -> None:
    with client.websocket_connect("/ws/training", headers=viewer.headers) as ws:
        ws.send_json({"type": "subscribe", "jobId": 999})
        assert ws.receive_json() == {"type": "error", "error": "Job 999 not found", "jobId": 999}
        ws.send_text("not json")
        assert ws.receive_json()["type"] == "error"
        ws.send_json({"type": "subscribe", "jobId": "7"})
        assert "integer jobId" in ws.receive_json()["error"]
        ws.send_json({"type": "dance"})
        assert ws.receive_json() == {"type": "error", "error": "Unknown message type 'dance'"}


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[str]:
    """The app on a real socket, served by uvicorn in a thread; yields its ws:// address."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the server to start")
    try:
        yield f"ws://127.0.0.1:{port}/ws/training"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def wait_for(condition: Any, what: str, timeout_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out waiting for {what}")
        time.sleep(0.02)


def test_slow_reader_is_disconnected_and_freed(
    app: FastAPI, live_server: str, runtime: Runtime, viewer: Account
) -> None:
    hub = TrainingHub(
        runtime, PollingEventListener(0.05), queue_size=8, slow_reader_grace_seconds=0.3
    )
    app.state.hub = hub
    job_id = make_job(runtime)
    num_events = 150
    # Random text, so compression cannot shrink it below the socket buffers of both ends.
    filler = secrets.token_urlsafe(48 * 1024)
    with runtime.db.session() as session:
        for index in range(num_events):
            append_event(session, job_id, "log", {"message": filler, "index": index})

    # A small receive buffer keeps the kernel from absorbing what the reader leaves unread.
    client_socket = socket.socket()
    client_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    client_socket.connect(("127.0.0.1", int(live_server.split(":")[2].split("/")[0])))
    with connect(
        live_server,
        sock=client_socket,
        additional_headers=viewer.headers,
        max_queue=1,
        ping_interval=None,
    ) as ws:
        ws.send(json.dumps({"type": "subscribe", "jobId": job_id}))
        wait_for(lambda: hub.connection_count == 1, "the connection to register")
        wait_for(lambda: hub.connection_count == 0, "the hub to drop the slow reader")
        received = 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
                received += 1
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013
    assert received < num_events
