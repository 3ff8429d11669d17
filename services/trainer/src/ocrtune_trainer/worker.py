"""The worker process: validates submitted jobs and runs queued ones, one at a time.

Run as ``python -m ocrtune_trainer.worker``; the API process starts it and restarts
it when it dies (``WorkerSupervisor``). Two threads: one validates jobs as they come
(so a bad dataset fails at once, even while another job trains), the main one
trains. A job whose worker died is failed with the reason, never left ``running``:
by the supervisor when it sees the exit, and by every worker when it starts.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ocrtune_shared.cer import CERResult
from ocrtune_shared.errors import ErrorBody, ErrorCode
from ocrtune_shared.jobs import Job, JobEventType, JobProgress, JobResult, JobState, LossPoint
from ocrtune_shared.store import AdapterStore, RemoteAdapterStore, StoredAdapter, is_remote_store
from ocrtune_trainer.jobs import JobConflict, JobQueue, this_worker_id
from ocrtune_trainer.settings import TrainerSettings

log = logging.getLogger("ocrtune_trainer.worker")


class Worker:
    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings
        self.queue = JobQueue(settings.resolved_database_url)
        self.store = AdapterStore(settings.local_adapter_store)
        self.remote_store = RemoteAdapterStore(str(settings.adapter_store)) if is_remote_store(settings.adapter_store) else None
        self.worker_id = this_worker_id()
        self.stopping = threading.Event()

    # --- lifecycle

    def run_forever(self) -> None:
        failed = self.queue.recover_orphans(stale_after=self.settings.heartbeat_timeout_s)
        for job_id in failed:
            log.warning("job %s was left running by a worker that is gone: marked failed", job_id)
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
            job = self.queue.claim_next(self.worker_id)
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
                self.queue.heartbeat(self.worker_id)
                self.queue.recover_orphans(stale_after=self.settings.heartbeat_timeout_s)
            except Exception:  # the database may be briefly unreachable; try again next beat
                log.exception("heartbeat failed")

    # --- validation

    def _validation_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                job = self.queue.claim_validation(self.worker_id)
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
            self.queue.update_result(
                job.id, JobResult(train_samples=prepared.train_rows, eval_samples=prepared.eval_rows)
            )
            self.queue.transition(job.id, JobState.queued, message=note)
        except JobConflict:
            self._cleanup(job.id)  # cancelled while it was being validated

    def _finish_validation(self, job_id: str, error: ErrorBody) -> None:
        try:
            self.queue.transition(job_id, JobState.failed, error=error)
        except JobConflict:
            pass
        self._cleanup(job_id)

    # --- running

    def workdir(self, job_id: str) -> Path:
        return self.settings.jobs_dir / job_id

    def _cleanup(self, job_id: str) -> None:
        if not self.settings.keep_job_files:
            shutil.rmtree(self.workdir(job_id), ignore_errors=True)

    def _stop_reason(self, job_id: str) -> str | None:
        if self.stopping.is_set():
            return "shutdown"
        return "cancelled" if self.queue.cancel_requested(job_id) else None

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
            self._free_device()
            self._cleanup(job.id)

    def _end(self, job_id: str, state: JobState, **kwargs: Any) -> None:
        try:
            self.queue.transition(job_id, state, **kwargs)
        except JobConflict as exc:
            log.warning("could not end %s as %s: %s", job_id, state.value, exc)

    def _end_stopped(self, job_id: str, reason: str) -> None:
        if reason == "cancelled":
            self._end(job_id, JobState.cancelled, message="cancelled while running")
        else:
            self._end(
                job_id,
                JobState.failed,
                error=ErrorBody(code=ErrorCode.internal, message="the trainer was shut down while this job ran"),
            )

    def _free_device(self) -> None:
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    def _train_and_publish(self, job: Job) -> JobResult:
        import torch

        from ocrtune_trainer.evaluation import evaluate, load_adapter_verified
        from ocrtune_trainer.publish import notify_inference, publish_adapter
        from ocrtune_trainer.training import TrainingStopped, load_base, pick_runtime, train_adapter
        from ocrtune_trainer.validation import fingerprint as rows_fingerprint
        from ocrtune_trainer.validation import prepare, read_prepared

        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        request = job.request
        hp = request.hyperparameters
        base_model = request.base_model or self.settings.base_model
        workdir = self.workdir(job.id)
        started = time.monotonic()
        should_stop = lambda: self._stop_reason(job.id)  # noqa: E731

        if not (workdir / "train.parquet").is_file():  # validated on another host, or its folder was lost
            prepare(request, workdir, self.settings)
        train_rows = read_prepared(workdir / "train.parquet")
        eval_rows = read_prepared(workdir / "eval.parquet")
        fingerprint = rows_fingerprint(train_rows)
        result = JobResult(train_samples=len(train_rows), eval_samples=len(eval_rows))
        runtime = pick_runtime(self.settings)

        self._phase(job.id, "evaluating_base", hp.max_steps)
        model, processor = load_base(base_model, runtime, self.settings.vision_micro_batch)
        family = model.config.model_type

        def eval_cer(evaluated: object) -> CERResult:
            cer, _ = evaluate(
                evaluated,
                processor,
                eval_rows,
                request.prompt,
                max_new_tokens=hp.max_new_tokens,
                batch_size=self.settings.eval_batch_size,
                should_stop=should_stop,
            )
            return cer

        cer_before = eval_cer(model)
        result.cer_before = cer_before
        self.queue.update_result(job.id, result)
        self.queue.log(
            job.id,
            f"base model CER on {len(eval_rows)} eval rows: corpus {cer_before.corpus_cer:.4f}, mean {cer_before.mean_cer:.4f}",
            JobEventType.eval,
            cer=cer_before,
        )

        self._phase(job.id, "training", hp.max_steps)
        curve: list[LossPoint] = []

        def sink(progress: JobProgress, point: LossPoint | None) -> None:
            if point is not None:
                curve.append(point)
            self.queue.update_progress(job.id, progress)

        outcome = train_adapter(
            request, model, processor, train_rows, workdir, runtime, self.settings, sink, should_stop
        )
        result.loss_curve = outcome.loss_curve or curve
        result.samples_per_second = outcome.samples_per_second
        result.peak_memory_mb = outcome.peak_memory_mb
        del model
        self._free_device()
        if (reason := should_stop()) is not None:
            raise TrainingStopped(reason)

        self._phase(job.id, "evaluating_adapter", hp.max_steps)

        def evaluate_files(folder: Path) -> CERResult:
            fresh, _ = load_base(base_model, runtime, self.settings.vision_micro_batch)
            cer_after = eval_cer(load_adapter_verified(fresh, folder))
            self.queue.log(
                job.id,
                f"adapter CER (reloaded from its files): corpus {cer_after.corpus_cer:.4f}, mean {cer_after.mean_cer:.4f}",
                JobEventType.eval,
                cer=cer_after,
            )
            return cer_after

        def export_merged(folder: Path) -> None:
            fresh, _ = load_base(base_model, runtime, self.settings.vision_micro_batch)
            merged = load_adapter_verified(fresh, outcome.adapter_dir).merge_and_unload()
            merged.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
            processor.save_pretrained(folder)

        stored, manifest = publish_adapter(
            self.store,
            name=request.adapter_name,
            adapter_dir=outcome.adapter_dir,
            base_model=base_model,
            model_family=family,
            rank=hp.rank,
            alpha=hp.alpha,
            target_modules=list(hp.target_modules),
            job_id=job.id,
            dataset_fingerprint=fingerprint,
            cer_before=cer_before,
            evaluate_files=evaluate_files,
            export_merged=export_merged if request.export_merged else None,
        )
        if self.remote_store is not None:
            # Published and verified in the local outbox; the remote copy gets the next remote version.
            version = self.remote_store.upload(stored)
            shutil.rmtree(stored.path, ignore_errors=True)
            stored = StoredAdapter(stored.name, version, Path(f"{self.remote_store.url}/{stored.name}/{version}"))
        self._phase(job.id, "publishing", hp.max_steps)
        result.cer_after = manifest.cer_after
        result.adapter = stored.ref
        result.runtime_s = time.monotonic() - started
        note = notify_inference(self.settings.inference_url, stored, api_key=self.settings.inference_api_key)
        if note:
            self.queue.log(job.id, note)
        return result

    def _phase(self, job_id: str, phase: str, total_steps: int) -> None:
        current = self.queue.get(job_id).progress
        self.queue.update_progress(
            job_id, current.model_copy(update={"phase": phase, "total_steps": total_steps}), message=phase
        )


class WorkerSupervisor:
    """Runs the worker process beside the API and restarts it when it dies.

    When the worker exits, the jobs it was running are failed at once with the exit
    reason (signal 9 is what the OOM killer sends), before a new worker is started.
    """

    def __init__(self, settings: TrainerSettings, queue: JobQueue, on_restart: Any = None) -> None:
        self.settings = settings
        self.queue = queue
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self.on_restart = on_restart
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        self._thread.start()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "ocrtune_trainer.worker"],
            env={**os.environ, **_settings_env(self.settings)},
            preexec_fn=_die_with_parent,
        )

    def _supervise(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            started = time.monotonic()
            self.process = self._spawn()
            code = self.process.wait()
            if self._stopping.is_set():
                break
            reason = describe_exit(self.process.pid, code)
            log.error("%s; restarting it", reason)
            try:
                self.queue.recover_orphans(dead_worker=this_worker_id(self.process.pid), reason=reason)
            except Exception:
                log.exception("could not mark the dead worker's jobs failed")
            self.restarts += 1
            if self.on_restart is not None:
                self.on_restart()
            backoff = 1.0 if time.monotonic() - started > 60 else min(backoff * 2, 30.0)
            self._stopping.wait(backoff)

    def stop(self, timeout: float = 15.0) -> None:
        self._stopping.set()
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._thread.join(timeout=5)


def describe_exit(pid: int, code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory, or killed)" if -code == signal.SIGKILL else ""
        return f"worker process {pid} was killed by {name}{hint}"
    return f"worker process {pid} exited with status {code}"


def _die_with_parent() -> None:
    # Linux: the kernel sends SIGTERM to the worker if the API process dies (even by kill -9).
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _settings_env(settings: TrainerSettings) -> dict[str, str]:
    """The settings as OCRTUNE_TRAINER_* variables, so a settings object given to create_app reaches the worker."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        env[f"OCRTUNE_TRAINER_{name.upper()}"] = str(value)
    return env


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
