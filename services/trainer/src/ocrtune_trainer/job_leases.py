"""Which worker holds which job, and what happens when it dies.

A worker takes a job by a lease: ``claim_next`` moves the oldest queued job to ``running``
under its worker id, ``claim_validation`` marks a job it validates. On Postgres the row is
taken with ``SELECT ... FOR UPDATE SKIP LOCKED``, so concurrent workers never wait on or
take the same job; on SQLite (one writer at a time) the state compare-and-set alone does.
Workers refresh their leases by ``heartbeat``; ``recover_orphans`` takes the running jobs of
a worker that is gone out of ``running`` (never left there): back to ``queued`` to be resumed
from their last checkpoint, a bounded number of times, else ``failed`` with the reason; it
hands the dead worker's validations back.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from ocrtune_shared.errors import ErrorBody, ErrorCode
from ocrtune_shared.jobs import Job, JobState
from ocrtune_shared.processes import process_alive
from ocrtune_trainer.job_store import JobConflict, JobStore
from ocrtune_trainer.job_tables import aware_utc, jobs_table, now


def this_worker_id(pid: int | None = None) -> str:
    return f"{socket.gethostname()}:{pid or os.getpid()}"


class JobLeases:
    """Claims, heartbeats and orphan recovery over a ``JobStore``."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def claim_validation(self, worker_id: str) -> Job | None:
        """Take the oldest job awaiting validation that no live worker holds."""
        with self.store.engine.begin() as conn:
            row = conn.execute(
                select(jobs_table.c.id)
                .where(jobs_table.c.state == JobState.validating.value, jobs_table.c.worker_id.is_(None))
                .order_by(jobs_table.c.seq)
                .limit(1)
                .with_for_update(skip_locked=True)  # Postgres: another worker's candidate is skipped, not awaited
            ).first()
            if row is None:
                return None
            changed = conn.execute(
                update(jobs_table)
                .where(jobs_table.c.id == row.id, jobs_table.c.worker_id.is_(None))
                .values(worker_id=worker_id, heartbeat_at=now())
            ).rowcount
        return self.store.get(row.id) if changed == 1 else None

    def claim_next(self, worker_id: str) -> Job | None:
        """Move the oldest queued job to ``running`` for ``worker_id``; ``None`` if none waits."""
        for _ in range(5):
            try:
                with self.store.engine.begin() as conn:
                    row = conn.execute(
                        select(jobs_table.c.id)
                        .where(jobs_table.c.state == JobState.queued.value)
                        .order_by(jobs_table.c.seq)
                        .limit(1)
                        .with_for_update(skip_locked=True)
                    ).first()
                    if row is None:
                        return None
                    self.store.transition_in(conn, row.id, JobState.running, worker_id=worker_id,
                                             message=f"started by {worker_id}")
                return self.store.get(row.id)
            except JobConflict:
                continue  # SQLite: cancelled or taken by another worker between the two statements
        return None

    def heartbeat(self, worker_id: str) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(
                update(jobs_table)
                .where(
                    jobs_table.c.worker_id == worker_id,
                    jobs_table.c.state.in_([JobState.running.value, JobState.validating.value]),
                )
                .values(heartbeat_at=now())
            )

    def recover_orphans(
        self,
        *,
        dead_worker: str | None = None,
        stale_after: float | None = None,
        reason: str = "",
        max_resumes: int = 0,
    ) -> dict[str, JobState]:
        """Take the ``running`` jobs of workers that are gone out of ``running``; hand their ``validating`` jobs back.

        A worker is gone when it is ``dead_worker`` (its supervisor saw it exit), when
        it ran on this host and its process no longer exists, or when its heartbeat is
        older than ``stale_after`` seconds (another host, or a hung process). Its job goes
        back to ``queued`` when it has a checkpoint and has been resumed fewer than
        ``max_resumes`` times (a job that keeps killing its worker must end), else it fails.
        Returns each job taken and the state it went to.
        """
        taken: dict[str, JobState] = {}
        host = socket.gethostname()
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(jobs_table.c.id, jobs_table.c.state, jobs_table.c.worker_id, jobs_table.c.heartbeat_at).where(
                    jobs_table.c.state.in_([JobState.running.value, JobState.validating.value]),
                    jobs_table.c.worker_id.is_not(None),
                )
            ).all()
        for row in rows:
            why = _gone(row.worker_id, aware_utc(row.heartbeat_at), dead_worker, stale_after, host)
            if why is None:
                continue
            if row.state == JobState.validating.value:
                with self.store.engine.begin() as conn:
                    conn.execute(
                        update(jobs_table)
                        .where(jobs_table.c.id == row.id, jobs_table.c.worker_id == row.worker_id)
                        .values(worker_id=None)
                    )
                continue
            try:
                taken[row.id] = self.end_unfinished(row.id, f"the worker running this job stopped: {reason or why}",
                                                 max_resumes)
            except JobConflict:
                pass
        return taken

    def end_unfinished(self, job_id: str, stopped: str, max_resumes: int) -> JobState:
        """A ``running`` job whose training stopped unfinished (``stopped`` says why): queued to resume from
        its last checkpoint, cancelled if that was asked, else failed. Returns the state it went to."""
        job = self.store.get(job_id)
        if self.store.cancel_requested(job_id):
            self.store.transition(job_id, JobState.cancelled, message=f"{stopped}; cancelled as asked",
                                  only_from=[JobState.running])
            return JobState.cancelled
        checkpoints = [c for c in job.result.checkpoints if c.kept]
        if checkpoints and job.resumes < max_resumes:
            self._requeue_to_resume(
                job_id,
                f"{stopped}; it will resume from the checkpoint at step {checkpoints[-1].step} "
                f"(resume {job.resumes + 1} of at most {max_resumes})",
            )
            return JobState.queued
        if not checkpoints:
            why_not = "it had no checkpoint to resume from, so it did not finish"
        else:
            why_not = f"it was resumed {job.resumes} times already (the most allowed), so it did not finish"
        self.store.transition(job_id, JobState.failed, error=ErrorBody(code=ErrorCode.internal,
                              message=f"{stopped}; {why_not}"), only_from=[JobState.running])
        return JobState.failed

    def _requeue_to_resume(self, job_id: str, message: str) -> Job:
        """``running`` -> ``queued`` for another worker to resume it from its checkpoint; counts the resume."""
        with self.store.engine.begin() as conn:
            self.store.transition_in(conn, job_id, JobState.queued, message=message, only_from=[JobState.running])
            conn.execute(
                update(jobs_table)
                .where(jobs_table.c.id == job_id)
                .values(resumes=func.coalesce(jobs_table.c.resumes, 0) + 1)
            )
        return self.store.get(job_id)


def _gone(
    worker_id: str, heartbeat: datetime | None, dead_worker: str | None, stale_after: float | None, host: str
) -> str | None:
    if dead_worker is not None and worker_id == dead_worker:
        return "its process exited"
    worker_host, _, pid = worker_id.rpartition(":")
    if worker_host == host and pid.isdigit() and not process_alive(int(pid)):
        return f"its process (pid {pid}) no longer exists"
    if stale_after is not None and heartbeat is not None and now() - heartbeat > timedelta(seconds=stale_after):
        return f"no heartbeat for more than {stale_after:.0f} s"
    return None
