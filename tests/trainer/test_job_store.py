"""The durable job store, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from ocrtune_shared.finetune import FinetuneRequest
from ocrtune_shared.jobs import JobProgress, JobState
from ocrtune_trainer.jobs import JobConflict, JobNotFound, JobQueue, metadata, this_worker_id


def _request(name: str = "store-test") -> FinetuneRequest:
    return FinetuneRequest(adapter_name=name, train={"uri": "s3://bucket/train.parquet"})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def queue(request: pytest.FixtureRequest, tmp_path) -> Iterator[JobQueue]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        from sqlalchemy import create_engine

        engine = create_engine(url)
        metadata.drop_all(engine)  # one server for the session: start each test from empty tables
        engine.dispose()
    q = JobQueue(url)
    yield q
    q.close()


def test_states_follow_the_state_machine(queue: JobQueue) -> None:
    job = queue.submit(_request())
    assert job.state is JobState.validating
    with pytest.raises(JobConflict):
        queue.transition(job.id, JobState.running)  # must be queued first
    queue.transition(job.id, JobState.queued)
    claimed = queue.claim_next("host:1")
    assert claimed is not None and claimed.id == job.id and claimed.state is JobState.running
    assert claimed.started_at is not None
    queue.transition(claimed.id, JobState.succeeded)
    with pytest.raises(JobConflict):
        queue.transition(job.id, JobState.failed)  # terminal states stay terminal
    states = [e.state for e in queue.events(job.id) if e.state]
    assert states == [JobState.validating, JobState.queued, JobState.running, JobState.succeeded]
    with pytest.raises(JobNotFound):
        queue.get("ftjob-missing")


def test_claim_next_takes_the_oldest_queued_job_once(queue: JobQueue) -> None:
    ids = [queue.submit(_request(f"n{i}")).id for i in range(3)]
    for job_id in ids:
        queue.transition(job_id, JobState.queued)
    assert queue.claim_next("w:1").id == ids[0]
    assert queue.claim_next("w:2").id == ids[1]
    assert queue.claim_next("w:3").id == ids[2]
    assert queue.claim_next("w:4") is None


def test_cancel_before_and_during_running(queue: JobQueue) -> None:
    waiting = queue.submit(_request("a"))
    assert queue.request_cancel(waiting.id).state is JobState.cancelled
    running = queue.submit(_request("b"))
    queue.transition(running.id, JobState.queued)
    queue.claim_next("w:1")
    assert not queue.cancel_requested(running.id)
    assert queue.request_cancel(running.id).state is JobState.running  # the worker stops it
    assert queue.cancel_requested(running.id)
    with pytest.raises(JobConflict):
        queue.request_cancel(waiting.id)


def test_list_is_paginated_newest_first_and_filters_by_state(queue: JobQueue) -> None:
    ids = [queue.submit(_request(f"p{i}")).id for i in range(5)]
    queue.transition(ids[1], JobState.failed)
    first = queue.list(limit=2)
    assert [j.id for j in first.jobs] == [ids[4], ids[3]] and first.next_cursor
    second = queue.list(limit=2, cursor=first.next_cursor)
    assert [j.id for j in second.jobs] == [ids[2], ids[1]]
    third = queue.list(limit=2, cursor=second.next_cursor)
    assert [j.id for j in third.jobs] == [ids[0]] and third.next_cursor is None
    assert [j.id for j in queue.list(state=JobState.failed).jobs] == [ids[1]]
    with pytest.raises(ValueError):
        queue.list(cursor="not-a-cursor")


def test_progress_is_stored_and_streamed_as_events(queue: JobQueue) -> None:
    job = queue.submit(_request())
    queue.update_progress(job.id, JobProgress(step=3, total_steps=10, loss=1.5, learning_rate=1e-3, phase="training"))
    assert queue.get(job.id).progress.loss == 1.5
    events = queue.events(job.id)
    assert events[-1].progress is not None and events[-1].progress.step == 3
    assert queue.events(job.id, after=events[-1].seq) == []


def test_jobs_of_a_dead_worker_fail_and_its_validations_are_handed_back(queue: JobQueue) -> None:
    # A real process that has exited: its pid no longer exists on this host.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    dead_id = this_worker_id(dead.pid)
    running = queue.submit(_request("r"))
    queue.transition(running.id, JobState.queued)
    queue.claim_next(dead_id)
    validating = queue.submit(_request("v"))
    assert queue.claim_validation(dead_id).id == validating.id
    assert queue.claim_validation("other:1") is None  # held by the (dead) worker

    alive = queue.submit(_request("alive"))
    queue.transition(alive.id, JobState.queued)
    queue.claim_next(this_worker_id(os.getpid()))  # this process is alive: its job stays running

    assert queue.recover_orphans(stale_after=3600) == [running.id]
    failed = queue.get(running.id)
    assert failed.state is JobState.failed and "no longer exists" in failed.error.message
    assert queue.get(alive.id).state is JobState.running
    assert queue.claim_validation("other:1").id == validating.id


def test_two_queues_on_one_database_see_each_other(queue: JobQueue) -> None:
    other = JobQueue(str(queue.engine.url.render_as_string(hide_password=False)))
    try:
        job = queue.submit(_request(f"x{uuid.uuid4().hex[:6]}"))
        assert other.get(job.id).state is JobState.validating
        other.transition(job.id, JobState.queued)
        assert queue.get(job.id).state is JobState.queued
    finally:
        other.close()


def test_a_store_from_an_older_version_gets_new_columns(queue: JobQueue) -> None:
    from sqlalchemy import inspect, text

    with queue.engine.begin() as conn:
        conn.execute(text("ALTER TABLE job_events DROP COLUMN cer"))
    assert "cer" not in {c["name"] for c in inspect(queue.engine).get_columns("job_events")}
    upgraded = JobQueue(queue.engine.url.render_as_string(hide_password=False))
    try:
        job = upgraded.submit(_request())
        assert upgraded.events(job.id)[0].cer is None
    finally:
        upgraded.close()
