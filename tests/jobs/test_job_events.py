"""Event sequence numbers stay gapless when many writers emit at once."""

from __future__ import annotations

import threading

import pytest
from jobs_testing import read_events, read_job, submit

from kai.jobs.context import JobContext
from kai.jobs.environment import JobEnvironment

pytestmark = pytest.mark.db

NUM_EMITTERS = 4
EVENTS_EACH = 15


def test_concurrent_emitters_get_gapless_sequence_numbers(env: JobEnvironment) -> None:
    job_id = submit(env.db, "test.succeed")
    barrier = threading.Barrier(NUM_EMITTERS)
    returned: list[int] = []

    def emit_many(emitter: int) -> None:
        context = JobContext(
            job_id=job_id,
            job_type="test.succeed",
            config={},
            attempt=1,
            settings=env.settings,
            db=env.db,
            blobs=env.blobs,
            work_dir=env.settings.work_dir,
        )
        barrier.wait()
        for index in range(EVENTS_EACH):
            returned.append(context.emit("log", {"emitter": emitter, "index": index}))

    threads = [threading.Thread(target=emit_many, args=(n,)) for n in range(NUM_EMITTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    total = NUM_EMITTERS * EVENTS_EACH
    events = read_events(env.db, job_id)
    assert [event.seq for event in events] == list(range(1, total + 1))
    assert sorted(returned) == list(range(1, total + 1))
    assert read_job(env.db, job_id).last_seq == total
    for emitter in range(NUM_EMITTERS):
        mine = [e.payload["index"] for e in events if e.payload["emitter"] == emitter]
        assert mine == list(range(EVENTS_EACH))
