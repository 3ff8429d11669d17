"""The fine-tune recipe, top to bottom: what one job does, from validated rows to a served adapter.

1. prepare: the rows validation wrote to the job's folder (again, if validated elsewhere);
2. load the base model;
3. evaluate the base: CER on the eval rows (measured once: a resumed job has it already);
4. train the LoRA adapter (``training.train_adapter``: trl's SFTTrainer), from the job's last
   checkpoint when its previous worker died; the loss curves and checkpoints go into the job's
   result as they come (``TrainingRecord``);
5. stage the adapter's files in the store's hidden staging folder;
6. evaluate the staged files, reloaded into a fresh base the way they will be served, and
   convert them for vLLM (``ocrtune_shared.families.convert_for_serving``);
7. commit: the store renames the folder into place as the next version, then the remote
   store (if any) gets it and the inference service is told.

Everything about the job's record (progress, events, stop requests) goes through ``JobReport``;
this module knows neither the database nor the worker process.
"""

from __future__ import annotations

import gc
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from ocrtune_shared.cer import CERResult
from ocrtune_shared.families import convert_for_serving
from ocrtune_shared.jobs import Checkpoint, Job, JobEventType, JobProgress, JobResult, LossPoint
from ocrtune_shared.store import AdapterStore, RemoteAdapterStore, StoredAdapter
from ocrtune_trainer.settings import TrainerSettings


class JobReport(Protocol):
    """Where a running job says how it is doing, and learns whether it must stop."""

    def phase(self, name: str) -> None: ...

    def progress(self, progress: JobProgress) -> None: ...

    def log(
        self,
        message: str,
        event_type: JobEventType = JobEventType.log,
        cer: CERResult | None = None,
        progress: JobProgress | None = None,
    ) -> None: ...

    def result(self, result: JobResult) -> None: ...

    def stop_reason(self) -> str | None:
        """'cancelled' or 'shutdown' when the job must stop, else None."""


def run_finetune(
    job: Job,
    workdir: Path,
    settings: TrainerSettings,
    store: AdapterStore,
    report: JobReport,
    remote_store: RemoteAdapterStore | None = None,
) -> JobResult:
    """Run ``job``'s recipe; returns its result. Raises ``TrainingStopped`` when told to stop."""
    from ocrtune_trainer.ddp import train_adapter_ddp, training_processes
    from ocrtune_trainer.evaluation import evaluate, load_adapter_verified
    from ocrtune_trainer.families import training_family_for
    from ocrtune_trainer.publish import manifest_for, notify_inference, stage_trained_files
    from ocrtune_trainer.training import TrainingStopped, load_base, pick_runtime, train_adapter
    from ocrtune_trainer.validation import fingerprint, prepare, read_prepared

    started = time.monotonic()
    request, hp = job.request, job.request.hyperparameters
    base_model = request.base_model or settings.base_model
    runtime = pick_runtime(settings)

    # 1. prepare
    if not (workdir / "train.parquet").is_file():  # validated on another host, or its folder was lost
        prepare(request, workdir, settings)
    train_rows, eval_rows = read_prepared(workdir / "train.parquet"), read_prepared(workdir / "eval.parquet")
    record = TrainingRecord(job, report, train_samples=len(train_rows), eval_samples=len(eval_rows))
    result = record.result
    resume_from = record.resume_point(workdir / "trainer")

    def cer_of(model: Any, what: str) -> CERResult:
        cer, _ = evaluate(model, processor, eval_rows, request.prompt, max_new_tokens=hp.max_new_tokens,
                          batch_size=settings.eval_batch_size, should_stop=report.stop_reason)
        report.log(f"{what} CER on {len(eval_rows)} eval rows: corpus {cer.corpus_cer:.4f}, mean {cer.mean_cer:.4f}",
                   JobEventType.eval, cer=cer)
        return cer

    # 2. load, 3. evaluate the base
    report.phase("evaluating_base")
    model, processor = load_base(base_model, runtime)
    family = training_family_for(model).family
    if result.cer_before is None:
        result.cer_before = cer_of(model, "base model")
    report.result(result)

    # 4. train: in this process, or in one process per GPU (DDP)
    report.phase("training")
    processes = training_processes(settings, runtime, hp)
    if processes > 1:
        del model  # each process loads its own copy on its own device
        free_device()
        report.log(f"training in {processes} processes (DDP through torchrun, "
                   f"{'NCCL' if runtime.device.type == 'cuda' else 'gloo'})")
        outcome = train_adapter_ddp(request, base_model, workdir, runtime, settings, record, report.stop_reason,
                                    processes=processes, resume_from=resume_from,
                                    tensorboard_dir=settings.tensorboard_dir / job.id)
    else:
        outcome = train_adapter(request, model, processor, train_rows, workdir, runtime, settings, record,
                                report.stop_reason, eval_rows=eval_rows, resume_from=resume_from,
                                tensorboard_dir=settings.tensorboard_dir / job.id)
        del model
    result.loss_curve = outcome.loss_curve or result.loss_curve
    result.eval_loss_curve = outcome.eval_loss_curve or result.eval_loss_curve
    result.samples_per_second = outcome.samples_per_second
    result.peak_memory_mb = outcome.peak_memory_mb
    if outcome.processes > 1:
        report.log(f"trained by {outcome.processes} processes together, "
                   f"{result.samples_per_second or 0:.1f} samples/s in all")
    if outcome.stopped_early:
        report.log(f"early stopping after step {result.loss_curve[-1].step if result.loss_curve else 0}: "
                   f"the eval loss stopped improving; the adapter is the best checkpoint's")
    report.result(result)
    free_device()
    if (reason := report.stop_reason()) is not None:
        raise TrainingStopped(reason)

    with store.stage(request.adapter_name) as staged:
        # 5. stage, 6. evaluate the staged files and convert them for serving
        stage_trained_files(outcome.adapter_dir, staged.path, base_model)
        report.phase("evaluating_adapter")
        fresh, _ = load_base(base_model, runtime)
        result.cer_after = cer_of(load_adapter_verified(fresh, staged.path), "adapter (reloaded from its files)")
        del fresh
        free_device()
        if request.export_merged:
            export_merged(base_model, runtime, settings, staged.path, processor)
        convert_for_serving(family, staged.path, staged.path)
        # 7. commit
        report.phase("publishing")
        stored = store.commit(staged, manifest_for(
            request, base_model=base_model, family=family, job_id=job.id,
            dataset_fingerprint=fingerprint(train_rows), cer_before=result.cer_before, cer_after=result.cer_after,
        ))
    if remote_store is not None:
        # Committed and verified in the local outbox; the remote copy gets the next remote version.
        version = remote_store.upload(stored)
        shutil.rmtree(stored.path, ignore_errors=True)
        stored = StoredAdapter(stored.name, version, Path(f"{remote_store.url}/{stored.name}/{version}"))
    result.adapter = stored.ref
    result.runtime_s = time.monotonic() - started
    note = notify_inference(settings.inference_url, stored, api_key=settings.inference_api_key)
    if note:
        report.log(note)
    return result


def export_merged(base_model: str, runtime: Any, settings: TrainerSettings, adapter: Path, processor: Any) -> None:
    """Merged 16-bit weights beside the adapter (``merged/``), for engines that take no LoRA."""
    import torch

    from ocrtune_trainer.evaluation import load_adapter_verified
    from ocrtune_trainer.training import load_base

    base, _ = load_base(base_model, runtime)
    merged = load_adapter_verified(base, adapter).merge_and_unload()
    merged.to(torch.bfloat16).save_pretrained(adapter / "merged", safe_serialization=True)
    processor.save_pretrained(adapter / "merged")
    del base, merged
    free_device()


def free_device() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


class TrainingRecord:
    """The job's result while it trains: loss curves and checkpoints, written to the job as they come.

    It is ``training.TrainingEvents`` for ``train_adapter``. A resumed job starts from the result
    its dead worker left, cut back to the checkpoint it resumes from, so the curves continue from
    that step without the steps that were trained again.
    """

    WRITE_EVERY_S = 1.0
    """The result (one JSON value, growing with the curve) is rewritten at most this often per step."""

    def __init__(self, job: Job, report: JobReport, *, train_samples: int, eval_samples: int) -> None:
        self.job, self.report = job, report
        self.result = job.result.model_copy(deep=True)
        self.result.train_samples, self.result.eval_samples = train_samples, eval_samples
        self._written = 0.0
        self._last_loss: float | None = None

    def resume_point(self, output_dir: Path) -> Path | None:
        """The newest complete checkpoint to resume from, or None to train from the start."""
        from ocrtune_trainer.training_events import saved_checkpoints

        result = self.result
        if not result.checkpoints:
            result.loss_curve, result.eval_loss_curve = [], []  # an earlier run without checkpoints: start over
            return None
        on_disk = saved_checkpoints(output_dir)
        if not on_disk:
            self.report.log(f"the checkpoint at step {result.checkpoints[-1].step} is not on this host "
                            f"({output_dir}): training from the start")
            result.checkpoints = [c.model_copy(update={"kept": False}) for c in result.checkpoints]
            result.loss_curve, result.eval_loss_curve = [], []
            return None
        step, folder = on_disk[-1]
        result.loss_curve = [p for p in result.loss_curve if p.step <= step]
        result.eval_loss_curve = [p for p in result.eval_loss_curve if p.step <= step]
        # The worker may have died between writing a checkpoint and recording it: the disk is the truth.
        recorded = {c.step: c for c in result.checkpoints if c.step <= step}
        for saved_step, saved_folder in on_disk:
            if saved_step not in recorded:
                recorded[saved_step] = Checkpoint(
                    step=saved_step, path=str(saved_folder),
                    saved_at=datetime.fromtimestamp(saved_folder.stat().st_mtime, timezone.utc),
                    loss=next((p.loss for p in result.loss_curve if p.step == saved_step), None),
                    eval_loss=next((p.loss for p in result.eval_loss_curve if p.step == saved_step), None),
                )
        kept = {s for s, _ in on_disk}
        result.checkpoints = [c.model_copy(update={"kept": c.step in kept}) for _, c in sorted(recorded.items())]
        at = self.job.progress.model_copy(update={
            "step": step, "loss": result.loss_curve[-1].loss if result.loss_curve else None, "eta_seconds": None})
        self.report.progress(at)  # back to the checkpoint's step: what was trained after it is trained again
        self.report.log(f"resuming from the checkpoint at step {step} ({folder.name}), resume {self.job.resumes}",
                        progress=at)
        return folder

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._written >= self.WRITE_EVERY_S:
            self._written = now
            self.report.result(self.result)

    # --- training.TrainingEvents

    def progress(self, progress: JobProgress, point: LossPoint | None) -> None:
        if point is not None:
            self._last_loss = point.loss
            self.result.loss_curve.append(point)
        self.report.progress(progress)
        self._write()

    def evaluated(self, point: LossPoint) -> None:
        self.result.eval_loss_curve.append(point)  # before the checkpoint of the same step is saved
        self._write(force=True)

    def checkpoint_saved(self, step: int, on_disk: list[tuple[int, Path]]) -> None:
        kept = {s for s, _ in on_disk}
        for checkpoint in self.result.checkpoints:
            checkpoint.kept = checkpoint.step in kept
        folder = dict(on_disk).get(step)
        if folder is not None and all(c.step != step for c in self.result.checkpoints):
            evaluated = [p.loss for p in self.result.eval_loss_curve if p.step == step]
            self.result.checkpoints.append(Checkpoint(
                step=step, path=str(folder), saved_at=datetime.now(timezone.utc), loss=self._last_loss,
                eval_loss=evaluated[-1] if evaluated else None,
            ))
        self._write(force=True)
        self.report.log(f"checkpoint at step {step} saved: {folder}", JobEventType.checkpoint,
                        progress=JobProgress(step=step, phase="training", loss=self._last_loss))
