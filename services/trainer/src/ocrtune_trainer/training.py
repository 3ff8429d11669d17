"""LoRA training with trl's SFTTrainer, configured from the job's ``FinetuneRequest``.

The dataset is conversational ``prompt``/``completion`` columns plus an ``image``
column: SFTTrainer then picks its vision-language collator and masks the prompt
(image tokens included), so only the transcription is learned. The chat template
closes the assistant turn with the end-of-turn token, so the model learns to stop.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ocrtune_shared.errors import ErrorCode
from ocrtune_shared.finetune import FinetuneRequest, HyperParameters
from ocrtune_shared.jobs import JobProgress, LossPoint
from ocrtune_trainer import deepseek_ocr
from ocrtune_trainer.datasets import DatasetError, DatasetRow
from ocrtune_trainer.frozen_vision import image_features_without_autograd, is_vision_module
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
    """The base model on the device and its processor; a frozen vision side runs without autograd,
    DeepSeek-OCR's in chunks of ``vision_micro_batch`` views (``frozen_vision``, ``deepseek_ocr``)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(base_model)
    model = AutoModelForImageTextToText.from_pretrained(base_model, dtype=runtime.dtype)
    image_features_without_autograd(model)
    deepseek_ocr.encode_images_in_chunks(model, vision_micro_batch)
    return model.to(runtime.device), processor


def language_model_targets(model: Any, names: list[str]) -> list[str] | str:
    """``target_modules`` for peft: the requested names, restricted to the language model.

    A bare list of names also wraps same-named modules of a vision tower (DeepSeek-OCR-2's
    Qwen2 encoder, see models.md); then a regex anchored on the language model is used.
    A bare list is kept when it is exact, because it is what vLLM's loader expects to read.
    """
    wanted = set(names)
    linear_names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    matched = [n for n in linear_names if n.rsplit(".", 1)[-1] in wanted]
    in_language_model = [n for n in matched if "language_model" in n or not is_vision_module(n)]
    found = {n.rsplit(".", 1)[-1] for n in in_language_model}
    missing = sorted(wanted - found)
    if missing:
        raise DatasetError(
            ErrorCode.invalid_request,
            f"target modules {missing} are not linear layers of this model's language model "
            f"(it has e.g. {sorted({n.rsplit('.', 1)[-1] for n in linear_names if not is_vision_module(n)})[:12]})",
            "hyperparameters.target_modules",
        )
    if len(in_language_model) == len(matched):
        return list(names)
    prefix = "language_model" if any("language_model" in n for n in in_language_model) else ""
    alternatives = "|".join(re.escape(n) for n in names)
    return rf".*{prefix}.*\.({alternatives})$"


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


def conversation(prompt: str, text: str | None = None) -> dict[str, list]:
    sample: dict[str, list] = {
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    }
    if text is not None:
        sample["completion"] = [{"role": "assistant", "content": [{"type": "text", "text": text}]}]
    return sample


def sft_dataset(rows: list[DatasetRow], prompt: str) -> Any:
    import datasets

    turn = [
        {
            "role": datasets.Value("string"),
            "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}],
        }
    ]
    features = datasets.Features({"image": datasets.Image(), "prompt": turn, "completion": turn})
    records = [conversation(prompt, row.text) for row in rows]
    # datasets fills the image part's missing "text" with None, which the chat template skips.
    return datasets.Dataset.from_dict(
        {
            "image": [{"bytes": row.image, "path": None} for row in rows],
            "prompt": [r["prompt"] for r in records],
            "completion": [r["completion"] for r in records],
        },
        features=features,
    )


@dataclass
class TrainOutcome:
    adapter_dir: Path
    loss_curve: list[LossPoint] = field(default_factory=list)
    runtime_s: float = 0.0
    samples_per_second: float | None = None
    peak_memory_mb: float | None = None
    steps: int = 0


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
    # DeepSeek-OCR-2 has no chat template and fused experts: its own dataset, collator and targets.
    family = deepseek_ocr.sft_overrides(model, processor, rows, request.prompt, hp.target_modules)
    lora = LoraConfig(
        r=hp.rank,
        lora_alpha=hp.alpha,
        lora_dropout=hp.dropout,
        bias=hp.bias.value,
        target_modules=family.target_modules if family else language_model_targets(model, hp.target_modules),
        target_parameters=family.target_parameters if family else None,
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
        **(family.config if family else {}),
    )
    callback = _progress_callback(hp.max_steps, sink, should_stop)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=family.train_dataset if family else sft_dataset(rows, request.prompt),
        data_collator=family.data_collator if family else None,
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
        runtime_s=runtime_s,
        samples_per_second=output.metrics.get("train_samples_per_second")
        or (samples / runtime_s if runtime_s else None),
        peak_memory_mb=peak_memory_mb(runtime),
        steps=trainer.state.global_step,
    )
    trainer.model = None  # drop the trainer's references so the caller can free the device
    return outcome


def peak_memory_mb(runtime: Runtime) -> float:
    if runtime.device.type == "cuda":
        return torch.cuda.max_memory_allocated(runtime.device) / 2**20
    import resource

    # ru_maxrss is in KiB on Linux: the worker process's peak resident memory.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
