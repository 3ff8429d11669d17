"""LoRA training with trl's SFTTrainer, configured from the job's ``FinetuneRequest``.

The model's family (``families``) supplies the dataset, the collator and the LoRA targets;
this module turns the request's hyper-parameters into trl's ``SFTConfig`` and reports
progress to the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ocrtune_shared.finetune import FinetuneRequest, HyperParameters
from ocrtune_shared.jobs import JobProgress, LossPoint
from ocrtune_trainer.datasets import DatasetRow
from ocrtune_trainer.families import training_family_for
from ocrtune_trainer.settings import Precision, TrainerSettings

ProgressSink = Callable[[JobProgress, "LossPoint | None"], None]
StopCheck = Callable[[], "str | None"]
"""Returns a reason ('cancelled', 'shutdown') when training must stop, else None."""


class TrainingStopped(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Runtime:
    device: torch.device
    dtype: torch.dtype
    bf16: bool
    fp16: bool


def pick_runtime(settings: TrainerSettings) -> Runtime:
    wanted = settings.device
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(wanted)
    precision = settings.precision
    if precision is Precision.auto:
        precision = Precision.bf16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else Precision.fp32
    dtype = {Precision.bf16: torch.bfloat16, Precision.fp16: torch.float16, Precision.fp32: torch.float32}[precision]
    return Runtime(device, dtype, bf16=precision is Precision.bf16, fp16=precision is Precision.fp16)


def load_base(base_model: str, runtime: Runtime, vision_micro_batch: int = 1) -> tuple[Any, Any]:
    """The base model on the device and its processor, as its family trains and evaluates it
    (frozen vision without autograd; DeepSeek-OCR's in chunks of ``vision_micro_batch`` views)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(base_model)
    model = AutoModelForImageTextToText.from_pretrained(base_model, dtype=runtime.dtype)
    training_family_for(model).prepare_loaded(model, vision_micro_batch)
    return model.to(runtime.device), processor


def optimizer_name(hp: HyperParameters, runtime: Runtime) -> str:
    if hp.optimizer == "adamw_8bit":
        if runtime.device.type == "cuda":
            try:
                import bitsandbytes  # noqa: F401

                return "adamw_bnb_8bit"
            except ImportError:
                pass
        return "adamw_torch"
    if hp.optimizer == "adamw_torch_fused" and runtime.device.type != "cuda":
        return "adamw_torch"
    return hp.optimizer


@dataclass
class TrainOutcome:
    adapter_dir: Path
    loss_curve: list[LossPoint] = field(default_factory=list)
    samples_per_second: float | None = None
    peak_memory_mb: float | None = None


def _progress_callback(total_steps: int, sink: ProgressSink, should_stop: StopCheck) -> Any:
    from transformers import TrainerCallback

    class JobProgressCallback(TrainerCallback):
        """Streams step/loss/lr/ETA to the job store and stops training when asked."""

        def __init__(self) -> None:
            self.started = time.monotonic()
            self.stop_reason: str | None = None
            self._last_check = 0.0

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            now = time.monotonic()
            if now - self._last_check >= 0.25:
                self._last_check = now
                reason = should_stop()
                if reason:
                    self.stop_reason = reason
                    control.should_training_stop = True
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> Any:
            logs = logs or {}
            if "loss" not in logs:
                return control
            step = state.global_step
            elapsed = time.monotonic() - self.started
            eta = elapsed / step * (total_steps - step) if step else None
            point = LossPoint(step=step, loss=float(logs["loss"]), learning_rate=_float(logs.get("learning_rate")))
            sink(
                JobProgress(
                    step=step,
                    total_steps=total_steps,
                    loss=point.loss,
                    learning_rate=point.learning_rate,
                    eta_seconds=eta,
                    phase="training",
                ),
                point,
            )
            return control

    return JobProgressCallback()


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def micro_batches(per_device: int, accumulation: int, max_micro_batch: int) -> tuple[int, int]:
    """(micro-batch, accumulation) with the same samples per optimizer step, micro-batches as large as allowed.

    Small micro-batches leave a GPU waiting on kernel launches: at full DeepSeek-OCR-2 size a step of
    2 x 4 line images took 0.67 s, the same 8 samples in one pass 0.20 s (bench/results/
    train_adapter_bench_h200_2026-12-02.json). Trainer normalises the loss by the step's label tokens
    (num_items_in_batch), so the regrouped step computes the same loss and gradient.
    """
    total = per_device * accumulation
    if max_micro_batch <= per_device:
        return per_device, accumulation
    size = max(d for d in range(per_device, min(total, max_micro_batch) + 1) if total % d == 0)
    return size, total // size


def train_adapter(
    request: FinetuneRequest,
    model: Any,
    processor: Any,
    rows: list[DatasetRow],
    workdir: Path,
    runtime: Runtime,
    settings: TrainerSettings,
    sink: ProgressSink,
    should_stop: StopCheck,
) -> TrainOutcome:
    """Train a LoRA adapter on ``rows`` and save it (PEFT files) under ``workdir/adapter``."""
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    hp = request.hyperparameters
    inputs = training_family_for(model).sft_inputs(model, processor, rows, request.prompt, hp.target_modules)
    lora = LoraConfig(
        r=hp.rank,
        lora_alpha=hp.alpha,
        lora_dropout=hp.dropout,
        bias=hp.bias.value,
        target_modules=inputs.target_modules,
        target_parameters=inputs.target_parameters,
        task_type="CAUSAL_LM",
    )
    micro, accumulation = micro_batches(hp.per_device_batch_size, hp.gradient_accumulation_steps,
                                        settings.max_micro_batch)
    config = SFTConfig(
        output_dir=str(workdir / "trainer"),
        max_steps=hp.max_steps,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        learning_rate=hp.learning_rate,
        lr_scheduler_type=hp.lr_scheduler,
        warmup_steps=hp.warmup_steps,
        weight_decay=hp.weight_decay,
        optim=optimizer_name(hp, runtime),
        seed=hp.seed,
        data_seed=hp.seed,
        # SFTTrainer turns both on by default; here they follow the settings and the device.
        gradient_checkpointing=settings.gradient_checkpointing,
        bf16=runtime.bf16,
        fp16=runtime.fp16,
        use_cpu=runtime.device.type == "cpu",
        # Truncation could cut image tokens out of a sample; OCR lines are short.
        max_length=None,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=settings.dataloader_workers,
        **inputs.config,
    )
    callback = _progress_callback(hp.max_steps, sink, should_stop)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=inputs.train_dataset,
        data_collator=inputs.data_collator,
        processing_class=processor,
        peft_config=lora,
        callbacks=[callback],
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # progress goes to the job store, not to stdout
    if runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)
    started = time.monotonic()
    output = trainer.train()
    runtime_s = time.monotonic() - started
    if callback.stop_reason:
        raise TrainingStopped(callback.stop_reason)
    adapter_dir = workdir / "adapter"
    trainer.save_model(str(adapter_dir))
    curve = [
        LossPoint(step=int(e["step"]), loss=float(e["loss"]), learning_rate=_float(e.get("learning_rate")))
        for e in trainer.state.log_history
        if "loss" in e and "step" in e
    ]
    samples = trainer.state.global_step * hp.per_device_batch_size * hp.gradient_accumulation_steps
    outcome = TrainOutcome(
        adapter_dir=adapter_dir,
        loss_curve=curve,
        samples_per_second=output.metrics.get("train_samples_per_second")
        or (samples / runtime_s if runtime_s else None),
        peak_memory_mb=peak_memory_mb(runtime),
    )
    trainer.model = None  # drop the trainer's references so the caller can free the device
    return outcome


def peak_memory_mb(runtime: Runtime) -> float:
    if runtime.device.type == "cuda":
        return torch.cuda.max_memory_allocated(runtime.device) / 2**20
    import resource

    # ru_maxrss is in KiB on Linux: the worker process's peak resident memory.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
