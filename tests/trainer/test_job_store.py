"""The durable job store and the workers' leases, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from ocrtune_shared.finetune import FinetuneRequest
from ocrtune_shared.jobs import JobProgress, JobState
from ocrtune_trainer.job_leases import JobLeases, this_worker_id
from ocrtune_trainer.job_store import JobConflict, JobNotFound, JobStore
from ocrtune_trainer.job_tables import metadata


def _request(name: str = "store-test") -> FinetuneRequest:
    return FinetuneRequest(adapter_name=name, train={"uri": "s3://bucket/train.parquet"})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[JobStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        from sqlalchemy import create_engine

        engine = create_engine(url)
        metadata.drop_all(engine)  # one server for the session: start each test from empty tables
        engine.dispose()
    jobs = JobStore(url)
    yield jobs
    jobs.close()


@pytest.fixture()
def leases(store: JobStore) -> JobLeases:
    return JobLeases(store)


def test_states_follow_the_state_machine(store: JobStore, leases: JobLeases) -> None:
    job = store.submit(_request())
    assert job.state is JobState.validating
    with pytest.raises(JobConflict):
        store.transition(job.id, JobState.running)  # must be queued first
    store.transition(job.id, JobState.queued)
    claimed = leases.claim_next("host:1")
    assert claimed is not None and claimed.id == job.id and claimed.state is JobState.running
    assert claimed.started_at is not None
    store.transition(claimed.id, JobState.succeeded)
    with pytest.raises(JobConflict):
        store.transition(job.id, JobState.failed)  # terminal states stay terminal
    states = [e.state for e in store.events(job.id) if e.state]
    assert states == [JobState.validating, JobState.queued, JobState.running, JobState.succeeded]
    with pytest.raises(JobNotFound):
        store.get("ftjob-missing")


def test_claim_next_takes_the_oldest_queued_job_once(store: JobStore, leases: JobLeases) -> None:
    ids = [store.submit(_request(f"n{i}")).id for i in range(3)]
    for job_id in ids:
        store.transition(job_id, JobState.queued)
    assert leases.claim_next("w:1").id == ids[0]
    assert leases.claim_next("w:2").id == ids[1]
    assert leases.claim_next("w:3").id == ids[2]
    assert leases.claim_next("w:4") is None


def test_cancel_before_and_during_running(store: JobStore, leases: JobLeases) -> None:
    waiting = store.submit(_request("a"))
    assert store.request_cancel(waiting.id).state is JobState.cancelled
    running = store.submit(_request("b"))
    store.transition(running.id, JobState.queued)
    leases.claim_next("w:1")
    assert not store.cancel_requested(running.id)
    assert store.request_cancel(running.id).state is JobState.running  # the worker stops it
    assert store.cancel_requested(running.id)
    with pytest.raises(JobConflict):
        store.request_cancel(waiting.id)


def test_list_is_paginated_newest_first_and_filters_by_state(store: JobStore, leases: JobLeases) -> None:
    ids = [store.submit(_request(f"p{i}")).id for i in range(5)]
    store.transition(ids[1], JobState.failed)
    first = store.list(limit=2)
    assert [j.id for j in first.jobs] == [ids[4], ids[3]] and first.next_cursor
    second = store.list(limit=2, cursor=first.next_cursor)
    assert [j.id for j in second.jobs] == [ids[2], ids[1]]
    third = store.list(limit=2, cursor=second.next_cursor)
    assert [j.id for j in third.jobs] == [ids[0]] and third.next_cursor is None
    assert [j.id for j in store.list(state=JobState.failed).jobs] == [ids[1]]
    with pytest.raises(ValueError):
        store.list(cursor="not-a-cursor")


def test_progress_is_stored_and_streamed_as_events(store: JobStore, leases: JobLeases) -> None:
    job = store.submit(_request())
    store.update_progress(job.id, JobProgress(step=3, total_steps=10, loss=1.5, learning_rate=1e-3, phase="training"))
    assert store.get(job.id).progress.loss == 1.5
    events = store.events(job.id)
    assert events[-1].progress is not None and events[-1].progress.step == 3
    assert store.events(job.id, after=events[-1].seq) == []


def test_jobs_of_a_dead_worker_fail_and_its_validations_are_handed_back(store: JobStore, leases: JobLeases) -> None:
    # A real process that has exited: its pid no longer exists on this host.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    dead_id = this_worker_id(dead.pid)
    running = store.submit(_request("r"))
    store.transition(running.id, JobState.queued)
    leases.claim_next(dead_id)
    validating = store.submit(_request("v"))
    assert leases.claim_validation(dead_id).id == validating.id
    assert leases.claim_validation("other:1") is None  # held by the (dead) worker

    alive = store.submit(_request("alive"))
    store.transition(alive.id, JobState.queued)
    leases.claim_next(this_worker_id(os.getpid()))  # this process is alive: its job stays running

    assert leases.recover_orphans(stale_after=3600) == {running.id: JobState.failed}
    failed = store.get(running.id)
    assert failed.state is JobState.failed and "no longer exists" in failed.error.message
    assert store.get(alive.id).state is JobState.running
    assert leases.claim_validation("other:1").id == validating.id


def test_two_stores_on_one_database_see_each_other(store: JobStore, leases: JobLeases) -> None:
    other = JobStore(str(store.engine.url.render_as_string(hide_password=False)))
    try:
        job = store.submit(_request(f"x{uuid.uuid4().hex[:6]}"))
        assert other.get(job.id).state is JobState.validating
        other.transition(job.id, JobState.queued)
        assert store.get(job.id).state is JobState.queued
    finally:
        other.close()


def test_a_store_from_an_older_version_gets_new_columns(store: JobStore, leases: JobLeases) -> None:
    from sqlalchemy import inspect, text

    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE job_events DROP COLUMN cer"))
    assert "cer" not in {c["name"] for c in inspect(store.engine).get_columns("job_events")}
    upgraded = JobStore(store.engine.url.render_as_string(hide_password=False))
    try:
        job = upgraded.submit(_request())
        assert upgraded.events(job.id)[0].cer is None
    finally:
        upgraded.close()


@pytest.mark.postgres
def test_claims_skip_a_job_another_worker_has_locked(tmp_path, request: pytest.FixtureRequest) -> None:
    """Postgres: a claim takes the next free job at once instead of waiting on a row another worker locked."""
    from sqlalchemy import create_engine, select

    from ocrtune_trainer.job_tables import jobs_table

    url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    metadata.drop_all(engine)
    engine.dispose()
    store = JobStore(url)
    try:
        first, second = (store.submit(_request(f"lock{i}")) for i in range(2))
        for job in (first, second):
            store.transition(job.id, JobState.queued)
        with store.engine.connect() as other_worker:
            with other_worker.begin():
                locked = other_worker.execute(
                    select(jobs_table.c.id).where(jobs_table.c.id == first.id).with_for_update()
                ).scalar_one()
                assert locked == first.id
                claimed = JobLeases(store).claim_next("w:2")  # would block here without SKIP LOCKED
                assert claimed is not None and claimed.id == second.id
        assert store.get(first.id).state is JobState.queued
    finally:
        store.close()


def _dead_worker() -> str:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return this_worker_id(dead.pid)


def test_a_dead_workers_job_with_a_checkpoint_is_queued_to_resume_a_bounded_number_of_times(
    store: JobStore, leases: JobLeases
) -> None:
    from datetime import datetime, timezone

    from ocrtune_shared.jobs import Checkpoint, JobResult

    job = store.submit(_request("resumable"))
    store.transition(job.id, JobState.queued)
    first = leases.claim_next(_dead_worker())
    store.update_result(job.id, JobResult(checkpoints=[
        Checkpoint(step=4, path="/w/checkpoint-4", saved_at=datetime.now(timezone.utc))]))

    assert leases.recover_orphans(max_resumes=1) == {job.id: JobState.queued}
    queued = store.get(job.id)
    assert queued.state is JobState.queued and queued.resumes == 1
    assert "resume from the checkpoint at step 4 (resume 1 of at most 1)" in store.events(job.id)[-1].message
    again = leases.claim_next(_dead_worker())
    assert again.id == job.id and again.started_at == first.started_at  # first started then, resumed since

    # Its second worker dies too: the bound is reached, the job fails with why.
    assert leases.recover_orphans(max_resumes=1) == {job.id: JobState.failed}
    failed = store.get(job.id)
    assert "resumed 1 times already" in failed.error.message and "no longer exists" in failed.error.message
    states = [e.state for e in store.events(job.id) if e.state]
    assert states == [JobState.validating, JobState.queued, JobState.running, JobState.queued, JobState.running,
                      JobState.failed]


def test_a_dead_workers_job_without_a_checkpoint_fails_and_a_cancelled_one_ends_cancelled(
    store: JobStore, leases: JobLeases
) -> None:
    plain, cancelling = store.submit(_request("plain")), store.submit(_request("cancelling"))
    for job in (plain, cancelling):
        store.transition(job.id, JobState.queued)
        leases.claim_next(_dead_worker())
    store.request_cancel(cancelling.id)
    assert leases.recover_orphans(max_resumes=3) == {plain.id: JobState.failed, cancelling.id: JobState.cancelled}
    assert "no checkpoint to resume from" in store.get(plain.id).error.message
