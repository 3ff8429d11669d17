"""The durable job store: jobs, their state machine, and their event log.

SQLite by default, Postgres by URL, through SQLAlchemy Core. Every state change is
a compare-and-set (``UPDATE ... WHERE state = <old>``) checked against
``ocrtune_shared.jobs.can_transition``, so the API process (submit, cancel) and the
worker process (validate, claim, finish) never overwrite each other's decisions.
Which worker holds which job, and what happens when it dies, is ``job_leases``; the tables
and the database engine are ``job_tables``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, update

from ocrtune_shared.cer import CERResult
from ocrtune_shared.errors import ErrorBody, ErrorCode
from ocrtune_shared.finetune import FinetuneRequest
from ocrtune_shared.jobs import (
    Job,
    JobEvent,
    JobEventList,
    JobEventType,
    JobList,
    JobProgress,
    JobResult,
    JobState,
    can_transition,
)
from ocrtune_trainer.job_tables import (
    aware_utc,
    create_or_upgrade,
    events_table,
    jobs_table,
    make_engine,
    now,
)


class JobNotFound(LookupError):
    pass


class JobConflict(RuntimeError):
    """The job is not in a state that allows the change (someone else changed it first)."""


class JobStore:
    """Jobs in a SQL database, shared by the API process and the worker process."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(url)
        create_or_upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # --- reading

    def to_job(self, row: Any) -> Job:
        return Job(
            id=row.id,
            state=JobState(row.state),
            request=FinetuneRequest.model_validate(row.request),
            progress=JobProgress.model_validate(row.progress),
            result=JobResult.model_validate(row.result),
            error=ErrorBody.model_validate(row.error) if row.error else None,
            resumes=row.resumes or 0,
            created_at=aware_utc(row.created_at),
            updated_at=aware_utc(row.updated_at),
            started_at=aware_utc(row.started_at),
            finished_at=aware_utc(row.finished_at),
        )

    def get(self, job_id: str) -> Job:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs_table).where(jobs_table.c.id == job_id)).first()
        if row is None:
            raise JobNotFound(f"job {job_id!r} does not exist")
        return self.to_job(row)

    def list(self, state: JobState | None = None, cursor: str | None = None, limit: int = 20) -> JobList:
        """Newest first; ``cursor`` is the opaque ``next_cursor`` of the previous page."""
        query = select(jobs_table).order_by(jobs_table.c.seq.desc()).limit(limit + 1)
        if state is not None:
            query = query.where(jobs_table.c.state == state.value)
        if cursor is not None:
            if not cursor.isdigit():
                raise ValueError(f"cursor {cursor!r} is not one this service handed out")
            query = query.where(jobs_table.c.seq < int(cursor))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        page = rows[:limit]
        next_cursor = str(page[-1].seq) if len(rows) > limit else None
        return JobList(jobs=[self.to_job(r) for r in page], next_cursor=next_cursor)

    def count_by_state(self) -> dict[JobState, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs_table.c.state, func.count()).group_by(jobs_table.c.state)).all()
        counts = {state: 0 for state in JobState}
        counts.update({JobState(state): n for state, n in rows})
        return counts

    def cancel_requested(self, job_id: str) -> bool:
        with self.engine.connect() as conn:
            value = conn.execute(select(jobs_table.c.cancel_requested).where(jobs_table.c.id == job_id)).scalar()
        return bool(value)

    def event_page(
        self, job_id: str, after: int = 0, limit: int = 100, type_: JobEventType | None = None
    ) -> JobEventList:
        """One page of ``job_id``'s events after ``after``; ``JobNotFound`` for an unknown job."""
        self.get(job_id)
        events = self.events(job_id, after, limit + 1, type_)
        page = events[:limit]
        return JobEventList(events=page, next_after=page[-1].seq if len(events) > limit else None)

    def events(
        self, job_id: str, after: int = 0, limit: int = 500, type_: JobEventType | None = None
    ) -> list[JobEvent]:
        query = (
            select(events_table)
            .where(events_table.c.job_id == job_id, events_table.c.seq > after)
            .order_by(events_table.c.seq)
            .limit(limit)
        )
        if type_ is not None:
            query = query.where(events_table.c.type == type_.value)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            JobEvent(
                seq=r.seq,
                job_id=r.job_id,
                type=JobEventType(r.type),
                time=aware_utc(r.time),
                state=JobState(r.state) if r.state else None,
                progress=JobProgress.model_validate(r.progress) if r.progress else None,
                cer=CERResult.model_validate(r.cer) if r.cer else None,
                message=r.message,
            )
            for r in rows
        ]

    # --- writing

    def event_in(
        self,
        conn: Any,
        job_id: str,
        type_: JobEventType,
        *,
        state: JobState | None = None,
        progress: JobProgress | None = None,
        cer: CERResult | None = None,
        message: str = "",
    ) -> None:
        conn.execute(
            events_table.insert().values(
                job_id=job_id,
                type=type_.value,
                time=now(),
                state=state.value if state else None,
                progress=progress.model_dump(mode="json") if progress else None,
                cer=cer.model_dump(mode="json") if cer else None,
                message=message,
            )
        )

    def submit(self, request: FinetuneRequest) -> Job:
        job_id = f"ftjob-{uuid.uuid4().hex[:20]}"
        stamp = now()
        with self.engine.begin() as conn:
            conn.execute(
                jobs_table.insert().values(
                    id=job_id,
                    state=JobState.validating.value,
                    request=request.model_dump(mode="json"),
                    progress=JobProgress(phase="validating").model_dump(mode="json"),
                    result=JobResult().model_dump(mode="json"),
                    cancel_requested=False,
                    created_at=stamp,
                    updated_at=stamp,
                )
            )
            self.event_in(conn, job_id, JobEventType.state, state=JobState.validating, message="job created")
        return self.get(job_id)

    def transition(
        self,
        job_id: str,
        new: JobState,
        *,
        message: str = "",
        error: ErrorBody | None = None,
        result: JobResult | None = None,
        only_from: Iterable[JobState] | None = None,
        worker_id: str | None = None,
    ) -> Job:
        """Move ``job_id`` to ``new`` if the state machine allows it from its current state."""
        with self.engine.begin() as conn:
            self.transition_in(conn, job_id, new, message=message, error=error, result=result, only_from=only_from,
                               worker_id=worker_id)
        return self.get(job_id)

    def transition_in(
        self,
        conn: Any,
        job_id: str,
        new: JobState,
        *,
        message: str = "",
        error: ErrorBody | None = None,
        result: JobResult | None = None,
        only_from: Iterable[JobState] | None = None,
        worker_id: str | None = None,
    ) -> None:
        """``transition`` inside the caller's transaction (a lease taken with the row locked)."""
        row = conn.execute(select(jobs_table).where(jobs_table.c.id == job_id)).first()
        if row is None:
            raise JobNotFound(f"job {job_id!r} does not exist")
        old = JobState(row.state)
        allowed = set(only_from) if only_from is not None else None
        if not can_transition(old, new) or (allowed is not None and old not in allowed):
            raise JobConflict(f"job {job_id} is {old.value}; it cannot become {new.value}")
        stamp = now()
        values: dict[str, Any] = {"state": new.value, "updated_at": stamp}
        if new is JobState.running:
            values.update(worker_id=worker_id, heartbeat_at=stamp)
            if row.started_at is None:  # a resumed job keeps the time it first started
                values["started_at"] = stamp
        if new.terminal:
            values["finished_at"] = stamp
        if new is JobState.queued:
            values["worker_id"] = None
        if error is not None:
            values["error"] = error.model_dump(mode="json")
        if result is not None:
            values["result"] = result.model_dump(mode="json")
        changed = conn.execute(
            update(jobs_table).where(jobs_table.c.id == job_id, jobs_table.c.state == old.value).values(**values)
        ).rowcount
        if changed != 1:
            raise JobConflict(f"job {job_id} changed state while becoming {new.value}")
        self.event_in(conn, job_id, JobEventType.state, state=new, message=message or (error.message if error else ""))

    def fail(self, job_id: str, code: ErrorCode, message: str, where: str | None = None) -> Job:
        return self.transition(job_id, JobState.failed, error=ErrorBody(code=code, message=message, where=where))

    def request_cancel(self, job_id: str) -> Job:
        """Cancel now if the job has not started; ask the worker to stop it if it runs."""
        job = self.get(job_id)
        if job.state.terminal:
            raise JobConflict(f"job {job_id} is already {job.state.value}")
        if job.state is JobState.running:
            with self.engine.begin() as conn:
                conn.execute(
                    update(jobs_table).where(jobs_table.c.id == job_id).values(cancel_requested=True, updated_at=now())
                )
                self.event_in(conn, job_id, JobEventType.log, message="cancel requested")
            return self.get(job_id)
        try:
            return self.transition(job_id, JobState.cancelled, message="cancelled before it ran")
        except JobConflict:
            # The worker claimed it meanwhile: it is running now, so ask again that way.
            return self.request_cancel(job_id)

    def update_progress(self, job_id: str, progress: JobProgress, *, event: bool = True, message: str = "") -> None:
        with self.engine.begin() as conn:
            stamp = now()
            conn.execute(
                update(jobs_table)
                .where(jobs_table.c.id == job_id)
                .values(progress=progress.model_dump(mode="json"), updated_at=stamp, heartbeat_at=stamp)
            )
            if event:
                self.event_in(conn, job_id, JobEventType.progress, progress=progress, message=message)

    def update_result(self, job_id: str, result: JobResult) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs_table)
                .where(jobs_table.c.id == job_id)
                .values(result=result.model_dump(mode="json"), updated_at=now())
            )

    def log(
        self,
        job_id: str,
        message: str,
        type_: JobEventType = JobEventType.log,
        cer: CERResult | None = None,
        progress: JobProgress | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            self.event_in(conn, job_id, type_, message=message, cer=cer, progress=progress)
