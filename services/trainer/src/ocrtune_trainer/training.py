"""LoRA training with trl's SFTTrainer, configured from the job's ``FinetuneRequest``.

The model's family (``families``) supplies the dataset, the collator and the LoRA targets;
this module turns the request's hyper-parameters into trl's ``SFTConfig``; what training
tells while it runs (steps, eval losses, checkpoints) goes out through ``training_events``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ocrtune_shared.finetune import FinetuneRequest, HyperParameters
from ocrtune_shared.jobs import LossPoint
from ocrtune_trainer.datasets import DatasetRow
from ocrtune_trainer.families import training_family_for
from ocrtune_trainer.settings import Precision, TrainerSettings
from ocrtune_trainer.training_events import (
    ProgressSink,
    SinkOnly,
    StopCheck,
    TrainingEvents,
    progress_callback,
    to_float,
)


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


def load_base(base_model: str, runtime: Runtime) -> tuple[Any, Any]:
    """The base model on the device and its processor, as its family trains and evaluates it
    (frozen vision without autograd; DeepSeek-OCR's SAM attention without its N x N bias)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(base_model)
    model = AutoModelForImageTextToText.from_pretrained(base_model, dtype=runtime.dtype)
    training_family_for(model).prepare_loaded(model)
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
    eval_loss_curve: list[LossPoint] = field(default_factory=list)
    samples_per_second: float | None = None
    peak_memory_mb: float | None = None
    stopped_early: bool = False
    """Early stopping ended training before its last step; the adapter is the best checkpoint's."""
    processes: int = 1
    """Processes that trained it together (DDP)."""


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


def process_batches(per_device: int, accumulation: int, max_micro_batch: int, processes: int = 1) -> tuple[int, int]:
    """(micro-batch, accumulation) of each of ``processes`` training processes (DDP), so that one
    optimizer step still takes the recipe's ``per_device x accumulation`` samples in all.

    The recipe means one step's samples whatever the hardware: two GPUs share a step's samples
    rather than doubling them, so a job trains the same on one GPU or on several.
    """
    if processes == 1:
        return micro_batches(per_device, accumulation, max_micro_batch)
    total = per_device * accumulation
    if total % processes:
        raise ValueError(f"{total} samples a step cannot be shared by {processes} processes")
    share = total // processes
    cap = max(max_micro_batch, min(per_device, share))
    size = max(d for d in range(1, min(share, cap) + 1) if share % d == 0)
    return size, share // size


def train_adapter(
    request: FinetuneRequest,
    model: Any,
    processor: Any,
    rows: list[DatasetRow],
    workdir: Path,
    runtime: Runtime,
    settings: TrainerSettings,
    sink: ProgressSink | TrainingEvents,
    should_stop: StopCheck,
    *,
    eval_rows: list[DatasetRow] | None = None,
    resume_from: Path | None = None,
    tensorboard_dir: Path | None = None,
    processes: int = 1,
) -> TrainOutcome:
    """Train a LoRA adapter on ``rows`` and save it (PEFT files) under ``workdir/adapter``.

    Checkpoints go to ``workdir/trainer/checkpoint-<step>``; ``resume_from`` continues from one.
    Under torchrun (``processes`` > 1) every process runs this with the same arguments.
    """
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    events = SinkOnly(sink) if callable(sink) else sink
    hp = request.hyperparameters
    family = training_family_for(model)
    inputs = family.sft_inputs(model, processor, rows, request.prompt, hp.target_modules)
    lora = LoraConfig(
        r=hp.rank,
        lora_alpha=hp.alpha,
        lora_dropout=hp.dropout,
        bias=hp.bias.value,
        target_modules=inputs.target_modules,
        target_parameters=inputs.target_parameters,
        task_type="CAUSAL_LM",
    )
    micro, accumulation = process_batches(hp.per_device_batch_size, hp.gradient_accumulation_steps,
                                          settings.max_micro_batch, processes)
    evaluation: dict[str, Any] = {}
    eval_dataset = None
    if hp.eval_steps is not None and eval_rows:
        eval_dataset = family.sft_inputs(model, processor, eval_rows, request.prompt, hp.target_modules).train_dataset
        evaluation = dict(
            eval_strategy="steps",
            eval_steps=hp.eval_steps,
            per_device_eval_batch_size=micro,
            prediction_loss_only=True,
            label_names=["labels"],  # peft's wrapper hides them from the Trainer's signature check
        )
        if hp.early_stopping_patience is not None:
            # The adapter kept is the best checkpoint's, by eval loss.
            evaluation.update(load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False)
    config = SFTConfig(
        output_dir=str(workdir / "trainer"),
        max_steps=hp.max_steps if hp.max_steps is not None else -1,
        num_train_epochs=hp.num_train_epochs or 1.0,
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
        ddp_backend=("gloo" if runtime.device.type == "cpu" else "nccl") if processes > 1 else None,
        # Truncation could cut image tokens out of a sample; OCR lines are short.
        max_length=None,
        logging_steps=1,
        save_strategy="steps",
        save_steps=hp.save_steps,
        save_total_limit=hp.save_total_limit,
        report_to=[],  # the job's own events; tensorboard below, into the folder chosen here
        disable_tqdm=True,
        dataloader_num_workers=settings.dataloader_workers,
        **evaluation,
        **inputs.config,
    )
    from transformers.trainer_callback import EarlyStoppingCallback, PrinterCallback

    callback = progress_callback(events, should_stop)
    callbacks: list[Any] = [callback]
    if hp.early_stopping_patience is not None and eval_dataset is not None:
        callbacks.append(EarlyStoppingCallback(hp.early_stopping_patience, hp.early_stopping_threshold))
    if "tensorboard" in hp.report_to and tensorboard_dir is not None:
        from transformers.integrations import TensorBoardCallback

        board = TensorBoardCallback()
        board.logging_dir = str(tensorboard_dir)
        callbacks.append(board)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=inputs.train_dataset,
        eval_dataset=eval_dataset,
        data_collator=inputs.data_collator,
        processing_class=processor,
        peft_config=lora,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # progress goes to the job store, not to stdout
    if runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)
    started = time.monotonic()
    first_step = 0
    if resume_from is not None:
        import json

        first_step = int(json.loads((resume_from / "trainer_state.json").read_text())["global_step"])
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    runtime_s = time.monotonic() - started
    if callback.stop_reason:
        raise TrainingStopped(callback.stop_reason)
    adapter_dir = workdir / "adapter"
    trainer.save_model(str(adapter_dir))
    history = trainer.state.log_history
    curve = [
        LossPoint(step=int(e["step"]), loss=float(e["loss"]), learning_rate=to_float(e.get("learning_rate")))
        for e in history
        if "loss" in e and "step" in e
    ]
    eval_curve = [LossPoint(step=int(e["step"]), loss=float(e["eval_loss"])) for e in history
                  if "eval_loss" in e and "step" in e]
    samples = (trainer.state.global_step - first_step) * hp.per_device_batch_size * hp.gradient_accumulation_steps
    outcome = TrainOutcome(
        adapter_dir=adapter_dir,
        loss_curve=curve,
        eval_loss_curve=eval_curve,
        samples_per_second=samples / runtime_s if runtime_s and samples else None,
        peak_memory_mb=peak_memory_mb(runtime),
        stopped_early=trainer.state.global_step < trainer.state.max_steps,
        processes=processes,
    )
    trainer.model = None  # drop the trainer's references so the caller can free the device
    return outcome


def peak_memory_mb(runtime: Runtime) -> float:
    if runtime.device.type == "cuda":
        return torch.cuda.max_memory_allocated(runtime.device) / 2**20
    import resource

    # ru_maxrss is in KiB on Linux: the worker process's peak resident memory.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
