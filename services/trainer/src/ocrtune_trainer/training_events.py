"""What training tells while it runs, and the trainer callback that tells it.

``train_adapter`` reports each logged step (train loss), each evaluation (eval loss) and each
checkpoint through ``TrainingEvents``: the recipe's ``TrainingRecord`` writes them into the job;
under DDP, rank 0's ``ddp.EventsFile`` hands them to the worker. The callback also stops
training when the job must stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ocrtune_shared.jobs import JobProgress, LossPoint

ProgressSink = Callable[[JobProgress, "LossPoint | None"], None]
StopCheck = Callable[[], "str | None"]
"""Returns a reason ('cancelled', 'shutdown') when training must stop, else None."""

CHECKPOINT_PREFIX = "checkpoint-"


def saved_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of the complete checkpoints under ``output_dir``, oldest first.

    The trainer writes ``trainer_state.json`` last; a folder without it was cut short (the
    process died while saving) and cannot be resumed from.
    """
    found = []
    for folder in output_dir.glob(f"{CHECKPOINT_PREFIX}*"):
        step = folder.name.removeprefix(CHECKPOINT_PREFIX)
        if step.isdigit() and (folder / "trainer_state.json").is_file():
            found.append((int(step), folder))
    return sorted(found)


class TrainingEvents(Protocol):
    """What ``train_adapter`` tells while it trains (from the main process only, under DDP)."""

    def progress(self, progress: JobProgress, point: LossPoint | None) -> None:
        """A logged step: its train loss (``point``), or an evaluation (``progress.eval_loss``)."""

    def evaluated(self, point: LossPoint) -> None:
        """The validation loss on the eval rows at ``point.step``."""

    def checkpoint_saved(self, step: int, on_disk: list[tuple[int, Path]]) -> None:
        """A checkpoint at ``step`` was written; ``on_disk``: the complete ones left after rotation."""


class SinkOnly:
    """``TrainingEvents`` for callers that only follow the train loss (benchmarks)."""

    def __init__(self, sink: ProgressSink) -> None:
        self.sink = sink

    def progress(self, progress: JobProgress, point: LossPoint | None) -> None:
        self.sink(progress, point)

    def evaluated(self, point: LossPoint) -> None:
        pass

    def checkpoint_saved(self, step: int, on_disk: list[tuple[int, Path]]) -> None:
        pass


def progress_callback(events: TrainingEvents, should_stop: StopCheck) -> Any:
    from transformers import TrainerCallback

    class JobProgressCallback(TrainerCallback):
        """Streams step/loss/lr/ETA, eval losses and checkpoints to the job; stops training when asked."""

        def __init__(self) -> None:
            self.started = time.monotonic()
            self.first_step = 0
            self.stop_reason: str | None = None
            self._last_check = 0.0
            self._last: JobProgress | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            # A resumed run starts at its checkpoint's step: the ETA counts this run's steps only.
            self.started, self.first_step = time.monotonic(), state.global_step
            return control

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            now = time.monotonic()
            if now - self._last_check >= 0.25:
                self._last_check = now
                reason = should_stop()
                if reason:
                    self.stop_reason = reason
                    control.should_training_stop = True
            return control

        def _progress(self, state: Any, **values: Any) -> JobProgress:
            step = state.global_step
            done = step - self.first_step
            elapsed = time.monotonic() - self.started
            eta = elapsed / done * (state.max_steps - step) if done > 0 else None
            return JobProgress(step=step, total_steps=state.max_steps, eta_seconds=eta, phase="training", **values)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> Any:
            logs = logs or {}
            if "loss" not in logs or not state.is_world_process_zero:
                return control
            point = LossPoint(step=state.global_step, loss=float(logs["loss"]),
                              learning_rate=to_float(logs.get("learning_rate")))
            self._last = self._progress(state, loss=point.loss, learning_rate=point.learning_rate)
            events.progress(self._last, point)
            return control

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kwargs: Any) -> Any:
            loss = to_float((metrics or {}).get("eval_loss"))
            if loss is None or not state.is_world_process_zero:
                return control
            point = LossPoint(step=state.global_step, loss=loss)
            events.evaluated(point)
            last = self._last
            events.progress(self._progress(state, loss=last.loss if last else None, eval_loss=loss,
                                           learning_rate=last.learning_rate if last else None), None)
            return control

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.is_world_process_zero:
                events.checkpoint_saved(state.global_step, saved_checkpoints(Path(args.output_dir)))
            return control

    return JobProgressCallback()


def to_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
