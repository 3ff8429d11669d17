"""The worker process: validates submitted jobs and runs queued ones, one at a time.

Run as ``python -m ocrtune_trainer.worker``; the API process starts it and restarts
it when it dies (``supervisor.WorkerSupervisor``). Two threads: one validates jobs as
they come (so a bad dataset fails at once, even while another job trains), the main one
trains, running each job's recipe (``recipe.run_finetune``). A job whose worker died is
never left ``running``: the supervisor when it sees the exit, and every worker when it
starts, queue it again to resume from its last checkpoint (at most ``MAX_RESUMES`` times)
or fail it with the reason. Its work folder (rows, checkpoints) stays until it ends.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

from ocrtune_shared.cer import CERResult
from ocrtune_shared.errors import ErrorBody, ErrorCode
from ocrtune_shared.jobs import Job, JobEventType, JobProgress, JobResult, JobState
from ocrtune_shared.store import AdapterStore, RemoteAdapterStore, is_remote_store
from ocrtune_trainer.job_leases import JobLeases, this_worker_id
from ocrtune_trainer.job_store import JobConflict, JobStore
from ocrtune_trainer.recipe import free_device
from ocrtune_trainer.settings import TrainerSettings

log = logging.getLogger("ocrtune_trainer.worker")


class Worker:
    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings
        self.jobs = JobStore(settings.resolved_database_url)
        self.leases = JobLeases(self.jobs)
        self.store = AdapterStore(settings.local_adapter_store)
        self.remote_store = RemoteAdapterStore(str(settings.adapter_store)) if is_remote_store(settings.adapter_store) else None
        self.worker_id = this_worker_id()
        self.stopping = threading.Event()

    # --- lifecycle

    def run_forever(self) -> None:
        taken = self.leases.recover_orphans(stale_after=self.settings.heartbeat_timeout_s,
                                            max_resumes=self.settings.max_resumes)
        for job_id, state in taken.items():
            log.warning("job %s was left running by a worker that is gone: now %s", job_id, state.value)
        threads = [
            threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True),
            threading.Thread(target=self._validation_loop, name="validation", daemon=True),
        ]
        for thread in threads:
            thread.start()
        parent = os.getppid()
        while not self.stopping.is_set():
            if os.getppid() != parent:
                log.warning("the trainer API process is gone; the worker stops")
                break
            job = self.leases.claim_next(self.worker_id)
            if job is None:
                self.stopping.wait(self.settings.poll_interval_s)
                continue
            self.run_job(job)
        self.stopping.set()

    def stop(self) -> None:
        self.stopping.set()

    def _heartbeat_loop(self) -> None:
        while not self.stopping.wait(self.settings.heartbeat_interval_s):
            try:
                self.leases.heartbeat(self.worker_id)
                self.leases.recover_orphans(stale_after=self.settings.heartbeat_timeout_s,
                                            max_resumes=self.settings.max_resumes)
            except Exception:  # the database may be briefly unreachable; try again next beat
                log.exception("heartbeat failed")

    # --- validation

    def _validation_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                job = self.leases.claim_validation(self.worker_id)
            except Exception:
                log.exception("claiming a job to validate failed")
                job = None
            if job is None:
                self.stopping.wait(self.settings.poll_interval_s)
                continue
            self.validate_job(job)

    def validate_job(self, job: Job) -> None:
        from ocrtune_trainer.datasets import DatasetError
        from ocrtune_trainer.validation import check_base_model, prepare

        workdir = self.workdir(job.id)
        request = job.request
        try:
            prepared = prepare(request, workdir, self.settings)
            check_base_model(request, request.base_model or self.settings.base_model)
        except DatasetError as exc:
            self._finish_validation(job.id, ErrorBody(code=exc.code, message=exc.message, where=exc.where))
            return
        except Exception as exc:
            log.exception("validation of %s crashed", job.id)
            self._finish_validation(
                job.id, ErrorBody(code=ErrorCode.dataset_invalid, message=f"{type(exc).__name__}: {exc}")
            )
            return
        note = f"validated: {prepared.train_rows} train rows, {prepared.eval_rows} eval rows"
        if prepared.eval_from_train:
            note += " (one row only: it is also the eval row)"
        try:
            self.jobs.update_result(
                job.id, JobResult(train_samples=prepared.train_rows, eval_samples=prepared.eval_rows)
            )
            self.jobs.transition(job.id, JobState.queued, message=note)
        except JobConflict:
            self._cleanup(job.id)  # cancelled while it was being validated

    def _finish_validation(self, job_id: str, error: ErrorBody) -> None:
        try:
            self.jobs.transition(job_id, JobState.failed, error=error)
        except JobConflict:
            pass
        self._cleanup(job_id)

    # --- running

    def workdir(self, job_id: str) -> Path:
        return self.settings.jobs_dir / job_id

    def _cleanup(self, job_id: str) -> None:
        """Remove an ended job's work folder, unless ``KEEP_JOB_FILES``."""
        if self.settings.keep_job_files or not self.jobs.get(job_id).state.terminal:
            return  # kept while the job can resume from its checkpoints
        shutil.rmtree(self.workdir(job_id), ignore_errors=True)

    def _stop_reason(self, job_id: str) -> str | None:
        if self.stopping.is_set():
            return "shutdown"
        return "cancelled" if self.jobs.cancel_requested(job_id) else None

    def run_job(self, job: Job) -> None:
        from ocrtune_trainer.datasets import DatasetError
        from ocrtune_trainer.training import TrainingStopped

        log.info("running %s", job.id)
        try:
            result = self._train_and_publish(job)
        except TrainingStopped as stop:
            self._end_stopped(job.id, stop.reason)
        except DatasetError as exc:
            self._end(job.id, JobState.failed, error=ErrorBody(code=exc.code, message=exc.message, where=exc.where))
        except MemoryError:
            self._end(job.id, JobState.failed, error=ErrorBody(code=ErrorCode.internal, message="out of memory"))
        except Exception as exc:
            log.exception("job %s failed", job.id)
            message = f"{type(exc).__name__}: {exc}"
            if "out of memory" in str(exc).lower():
                message = f"out of device memory: {exc}"
            self._end(job.id, JobState.failed, error=ErrorBody(code=ErrorCode.internal, message=message[:2000]))
        else:
            self._end(job.id, JobState.succeeded, result=result, message=f"published {result.adapter}")
        finally:
            free_device()
            self._cleanup(job.id)

    def _end(self, job_id: str, state: JobState, **kwargs: Any) -> None:
        if not self.settings.keep_job_files:
            # The work folder goes with the job's end (_cleanup): its checkpoints are listed as gone from then on.
            result: JobResult = kwargs.get("result") or self.jobs.get(job_id).result
            kwargs["result"] = result.model_copy(
                update={"checkpoints": [c.model_copy(update={"kept": False}) for c in result.checkpoints]}
            )
        try:
            self.jobs.transition(job_id, state, **kwargs)
        except JobConflict as exc:
            log.warning("could not end %s as %s: %s", job_id, state.value, exc)

    def _end_stopped(self, job_id: str, reason: str) -> None:
        if reason == "cancelled":
            self._end(job_id, JobState.cancelled, message="cancelled while running")
        else:
            # Like a worker that died: resumed from its checkpoint by the next worker, if it has one.
            try:
                self.leases.end_unfinished(job_id, "the trainer was shut down while this job ran",
                                           self.settings.max_resumes)
            except JobConflict as exc:
                log.warning("could not end %s after the shutdown: %s", job_id, exc)

    def _train_and_publish(self, job: Job) -> JobResult:
        from ocrtune_trainer.recipe import run_finetune

        if self.settings.torch_threads:
            import torch

            torch.set_num_threads(self.settings.torch_threads)
        report = StoreJobReport(self.jobs, job, lambda: self._stop_reason(job.id))
        return run_finetune(job, self.workdir(job.id), self.settings, self.store, report, self.remote_store)


class StoreJobReport:
    """``recipe.JobReport`` over the job store: progress, events and stop requests of one job."""

    def __init__(self, jobs: JobStore, job: Job, stop_reason: Any) -> None:
        self.jobs = jobs
        self.job_id = job.id
        self.total_steps = job.request.hyperparameters.max_steps
        self.stop_reason = stop_reason

    def phase(self, name: str) -> None:
        current = self.jobs.get(self.job_id).progress
        # With num_train_epochs the step count is known once training starts (its first progress).
        total = self.total_steps or current.total_steps
        self.jobs.update_progress(
            self.job_id, current.model_copy(update={"phase": name, "total_steps": total}), message=name
        )

    def progress(self, progress: JobProgress) -> None:
        self.jobs.update_progress(self.job_id, progress)

    def log(
        self,
        message: str,
        event_type: JobEventType = JobEventType.log,
        cer: CERResult | None = None,
        progress: JobProgress | None = None,
    ) -> None:
        self.jobs.log(self.job_id, message, event_type, cer=cer, progress=progress)

    def result(self, result: JobResult) -> None:
        self.jobs.update_result(self.job_id, result)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    worker = Worker(TrainerSettings())

    def _terminate(signum: int, _frame: Any) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    worker.run_forever()


if __name__ == "__main__":
    main()
