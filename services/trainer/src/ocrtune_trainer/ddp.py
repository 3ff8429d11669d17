"""One job trained by several processes at once (DDP, one per GPU), launched through torchrun.

The worker runs ``train_adapter_ddp``: it writes the job's training spec into the job's folder,
starts ``torchrun --nproc-per-node N -m ocrtune_trainer.ddp <spec>`` in a process group of its
own, and follows what rank 0 reports (progress, eval losses, checkpoints: one JSON line each in
``ddp/events.jsonl``) into the job, as ``train_adapter`` does in-process. Every rank runs this
module's ``main``: loads the base model on its device and calls the same ``train_adapter``
(transformers' Trainer sees torchrun's environment and wraps the model in DDP: NCCL on GPUs, gloo
on the CPU). Rank 0 saves the adapter and writes ``ddp/outcome.json``; the worker goes on with the
recipe (evaluation, publishing) in its own process.

A step takes the recipe's ``per_device_batch_size x gradient_accumulation_steps`` samples in all,
shared by the processes (``training.process_batches``), so a job trains the same on any number of
GPUs. A stop (cancel, shutdown) ends the whole group; training then stops as in-process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ocrtune_shared.finetune import FinetuneRequest, HyperParameters
from ocrtune_shared.jobs import JobProgress, LossPoint
from ocrtune_shared.processes import die_with_parent
from ocrtune_trainer.settings import TrainerSettings
from ocrtune_trainer.training import Runtime, TrainingStopped, TrainOutcome
from ocrtune_trainer.training_events import SinkOnly, StopCheck, TrainingEvents

SPEC_FILE, EVENTS_FILE, OUTCOME_FILE, LOG_FILE = "spec.json", "events.jsonl", "outcome.json", "torchrun.log"


def training_processes(settings: TrainerSettings, runtime: Runtime, hp: HyperParameters) -> int:
    """How many processes train this job: ``TRAINING_PROCESSES``, or (0) one per GPU the worker sees
    (``CUDA_VISIBLE_DEVICES``), at most as many as share a step's samples evenly."""
    import torch

    wanted = settings.training_processes
    if wanted == 0:
        pinned = ":" in settings.device  # cuda:N names one device
        wanted = torch.cuda.device_count() if runtime.device.type == "cuda" and not pinned else 1
    samples = hp.per_device_batch_size * hp.gradient_accumulation_steps
    return max(n for n in range(1, max(wanted, 1) + 1) if samples % n == 0)


def train_adapter_ddp(
    request: FinetuneRequest,
    base_model: str,
    workdir: Path,
    runtime: Runtime,
    settings: TrainerSettings,
    events: TrainingEvents,
    should_stop: StopCheck,
    *,
    processes: int,
    resume_from: Path | None = None,
    tensorboard_dir: Path | None = None,
) -> TrainOutcome:
    """Train on the job's prepared rows (``workdir/train.parquet``, ``eval.parquet``) in ``processes`` processes."""
    folder = workdir / "ddp"
    folder.mkdir(parents=True, exist_ok=True)
    for name in (EVENTS_FILE, OUTCOME_FILE):
        (folder / name).unlink(missing_ok=True)
    spec = {
        "request": request.model_dump(mode="json"),
        "base_model": base_model,
        "workdir": str(workdir),
        "device": runtime.device.type,
        "resume_from": str(resume_from) if resume_from else None,
        "tensorboard_dir": str(tensorboard_dir) if tensorboard_dir else None,
    }
    (folder / SPEC_FILE).write_text(json.dumps(spec))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "ocrtune_trainer.ddp", str(folder / SPEC_FILE)]
    env = {**os.environ, "OMP_NUM_THREADS": str(settings.torch_threads or 1)}
    with open(folder / LOG_FILE, "wb") as log:
        group = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                 preexec_fn=die_with_parent)  # torchrun ends its ranks when the worker dies
        try:
            code = _follow(group, folder / EVENTS_FILE, events, should_stop)
        finally:
            _end_group(group)
    if code != 0:
        tail = (folder / LOG_FILE).read_text(errors="replace").splitlines()[-25:]
        raise RuntimeError(f"DDP training in {processes} processes exited with status {code}: " + "\n".join(tail))
    done = json.loads((folder / OUTCOME_FILE).read_text())
    return TrainOutcome(
        adapter_dir=Path(done["adapter_dir"]),
        loss_curve=[LossPoint.model_validate(p) for p in done["loss_curve"]],
        eval_loss_curve=[LossPoint.model_validate(p) for p in done["eval_loss_curve"]],
        samples_per_second=done["samples_per_second"],
        peak_memory_mb=done["peak_memory_mb"],
        stopped_early=done["stopped_early"],
        processes=done["processes"],
    )


def _follow(group: subprocess.Popen, path: Path, events: TrainingEvents, should_stop: StopCheck) -> int:
    """Forward rank 0's events until the group exits; stop it when asked. Returns its exit status."""
    offset = 0
    while True:
        code = group.poll()
        if path.is_file():
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
            complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next look
            offset += len(complete)
            for line in complete.splitlines():
                _forward(json.loads(line), events)
        if code is not None:
            return code
        reason = should_stop()
        if reason:
            _end_group(group)
            raise TrainingStopped(reason)
        time.sleep(0.2)


def _forward(event: dict[str, Any], events: TrainingEvents) -> None:
    kind = event["kind"]
    if kind == "progress":
        point = LossPoint.model_validate(event["point"]) if event["point"] else None
        events.progress(JobProgress.model_validate(event["progress"]), point)
    elif kind == "evaluated":
        events.evaluated(LossPoint.model_validate(event["point"]))
    elif kind == "checkpoint":
        events.checkpoint_saved(event["step"], [(step, Path(folder)) for step, folder in event["on_disk"]])


def _end_group(group: subprocess.Popen) -> None:
    if group.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(group.pid, sig)
        except ProcessLookupError:
            return
        try:
            group.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


class EventsFile:
    """Rank 0's ``TrainingEvents``: one JSON line each, read by the worker (``_follow``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _write(self, event: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(event) + "\n")

    def progress(self, progress: JobProgress, point: LossPoint | None) -> None:
        self._write({"kind": "progress", "progress": progress.model_dump(mode="json"),
                     "point": point.model_dump(mode="json") if point else None})

    def evaluated(self, point: LossPoint) -> None:
        self._write({"kind": "evaluated", "point": point.model_dump(mode="json")})

    def checkpoint_saved(self, step: int, on_disk: list[tuple[int, Path]]) -> None:
        self._write({"kind": "checkpoint", "step": step, "on_disk": [[s, str(f)] for s, f in on_disk]})


def main() -> None:
    """One rank of a DDP training group (started by torchrun: RANK, LOCAL_RANK, WORLD_SIZE set)."""
    import torch

    from ocrtune_trainer.training import load_base, pick_runtime, train_adapter
    from ocrtune_trainer.validation import read_prepared

    spec_path = Path(sys.argv[1])
    spec = json.loads(spec_path.read_text())
    settings = TrainerSettings()
    rank, local_rank, world = (int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    runtime = pick_runtime(settings)
    if spec["device"] == "cuda":
        runtime.device = torch.device("cuda", local_rank)
        torch.cuda.set_device(runtime.device)
    request = FinetuneRequest.model_validate(spec["request"])
    workdir = Path(spec["workdir"])
    model, processor = load_base(spec["base_model"], runtime)
    events: TrainingEvents = EventsFile(spec_path.parent / EVENTS_FILE) if rank == 0 else SinkOnly(lambda *_: None)
    outcome = train_adapter(
        request, model, processor, read_prepared(workdir / "train.parquet"), workdir, runtime, settings, events,
        lambda: None, eval_rows=read_prepared(workdir / "eval.parquet"),
        resume_from=Path(spec["resume_from"]) if spec["resume_from"] else None,
        tensorboard_dir=Path(spec["tensorboard_dir"]) if spec["tensorboard_dir"] else None, processes=world,
    )
    if rank == 0:
        done = {
            "adapter_dir": str(outcome.adapter_dir),
            "loss_curve": [p.model_dump(mode="json") for p in outcome.loss_curve],
            "eval_loss_curve": [p.model_dump(mode="json") for p in outcome.eval_loss_curve],
            "samples_per_second": outcome.samples_per_second,
            "peak_memory_mb": outcome.peak_memory_mb,
            "stopped_early": outcome.stopped_early,
            "processes": world,
        }
        partial = spec_path.parent / (OUTCOME_FILE + ".partial")
        partial.write_text(json.dumps(done))
        partial.rename(spec_path.parent / OUTCOME_FILE)


if __name__ == "__main__":
    main()
