"""The fine-tune recipe, top to bottom: what one job does, from validated rows to a served adapter.

1. prepare: the rows validation wrote to the job's folder (again, if validated elsewhere);
2. load the base model;
3. evaluate the base: CER on the eval rows;
4. train the LoRA adapter (``training.train_adapter``: trl's SFTTrainer);
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
from pathlib import Path
from typing import Any, Protocol

from ocrtune_shared.cer import CERResult
from ocrtune_shared.families import convert_for_serving
from ocrtune_shared.jobs import Job, JobEventType, JobProgress, JobResult, LossPoint
from ocrtune_shared.store import AdapterStore, RemoteAdapterStore, StoredAdapter
from ocrtune_trainer.settings import TrainerSettings


class JobReport(Protocol):
    """Where a running job says how it is doing, and learns whether it must stop."""

    def phase(self, name: str) -> None: ...

    def progress(self, progress: JobProgress) -> None: ...

    def log(self, message: str, event_type: JobEventType = JobEventType.log, cer: CERResult | None = None) -> None: ...

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
    result = JobResult(train_samples=len(train_rows), eval_samples=len(eval_rows))

    def cer_of(model: Any, what: str) -> CERResult:
        cer, _ = evaluate(model, processor, eval_rows, request.prompt, max_new_tokens=hp.max_new_tokens,
                          batch_size=settings.eval_batch_size, should_stop=report.stop_reason)
        report.log(f"{what} CER on {len(eval_rows)} eval rows: corpus {cer.corpus_cer:.4f}, mean {cer.mean_cer:.4f}",
                   JobEventType.eval, cer=cer)
        return cer

    # 2. load, 3. evaluate the base
    report.phase("evaluating_base")
    model, processor = load_base(base_model, runtime, settings.vision_micro_batch)
    family = training_family_for(model).family
    result.cer_before = cer_of(model, "base model")
    report.result(result)

    # 4. train
    report.phase("training")
    curve: list[LossPoint] = []

    def sink(progress: JobProgress, point: LossPoint | None) -> None:
        if point is not None:
            curve.append(point)
        report.progress(progress)

    outcome = train_adapter(request, model, processor, train_rows, workdir, runtime, settings, sink, report.stop_reason)
    result.loss_curve = outcome.loss_curve or curve
    result.samples_per_second = outcome.samples_per_second
    result.peak_memory_mb = outcome.peak_memory_mb
    del model
    free_device()
    if (reason := report.stop_reason()) is not None:
        raise TrainingStopped(reason)

    with store.stage(request.adapter_name) as staged:
        # 5. stage, 6. evaluate the staged files and convert them for serving
        stage_trained_files(outcome.adapter_dir, staged.path, base_model)
        report.phase("evaluating_adapter")
        fresh, _ = load_base(base_model, runtime, settings.vision_micro_batch)
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

    base, _ = load_base(base_model, runtime, settings.vision_micro_batch)
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
