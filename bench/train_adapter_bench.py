"""Trainer path vs plain loop: ``train_adapter`` (trl SFTTrainer) against transformers + peft by hand.

(One script over ~350 lines on purpose: both variants side by side, so a reader sees that they
train the same model on the same rows in the same order; it runs as is on the GPU machine.)

Both variants train the same full-size DeepSeek-OCR-2 (random weights, the real shapes of
``train_gpu_bench.py``), written once to a temporary folder and loaded for each variant by
the trainer's own ``load_base``, on the same processor-tiled line images (``SCAN`` lines of
``ocrtune_devkit.synthetic``, 448x56: one 1024 px global view, 257 image tokens), with the
reference recipe: LoRA r16 / alpha 16 / dropout 0 on the language model, micro-batch 2 x
accumulation 4, lr 2e-4, linear schedule, 5 warm-up steps, bf16, adamw 8-bit (adamw_torch
without bitsandbytes), weight decay 0.001, grad-norm clip 1.0, seed 3407.

- ``trainer``: ``ocrtune_trainer.training.train_adapter`` as a job calls it, i.e. trl's
  SFTTrainer with ``DeepseekOcr2Training.sft_inputs`` (DeepseekOcr2Collator, LoRA regex, expert
  ``target_parameters``), a step's samples regrouped into micro-batches of up to
  ``max_micro_batch`` (8: the recipe's 2 x 4 runs as 8 x 1); ``trainer_unmerged``: the same
  with the micro-batches as asked (2 x 4); ``trainer_unfolded``: 8 x 1 with transformers' own SAM
  attention (its N x N relative-position bias, ``families.sam_attention``); ``trainer_mb8_gc``
  with gradient checkpointing; ``trainer_mb4``: micro-batches of 4. Its collator is wrapped only
  to record which rows it batched, in which order, and how long collation took (plain replays
  those rows in that order, in its own 2-sample micro-batches).
- ``plain``: ``get_peft_model`` with the same LoraConfig (``deepseek_ocr.lora_targets``),
  a hand-written loop: the same collator on the same rows in the order the trainer used, the
  loss normalised by the step's label-token count like Trainer's ``num_items_in_batch``,
  autocast as accelerate does, the same optimizer, schedule and clipping.

Both LoRA target sets: ``attn_mlp`` (attention + dense/shared MLP) and ``experts`` (the same
+ routed experts via peft ``target_parameters``). Per variant: s/step (median of the steps
after ``--warmup``, measured between consecutive optimizer-step ends in both variants),
samples/s, peak GiB (``torch.cuda.max_memory_allocated``, reset before each variant's
training), the first 20 losses side by side, and the trainer/plain ratios of the same run.
The last stdout line is one JSON summary, also written to ``--out``.

Usage::

    # CPU smoke test of this script (tiny config, < 3 min on 2 cores)
    .venv/bin/python bench/train_adapter_bench.py --tiny --steps 3
    # full size, one GPU (~2-4 min on an H200; 12 steps per variant, first 2 are warm-up)
    python bench/train_adapter_bench.py --out bench/results/train_adapter_bench.json

On the GPU machine: ``scripts/gpu_session.sh train`` after ``scripts/gpu_install.sh``
(docs/gpu-machine.md), with the lines rendered here beforehand (the machine has no CJK fonts)::

    .venv/bin/python bench/train_adapter_bench.py --render-only --samples .gpudata/train_lines.jsonl

Without those fonts and without ``--samples``, lines are drawn with PIL's default font at the
same 448x56 size (same tiling, same token counts; reported as ``render``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lines import load_or_render  # noqa: E402
from train_gpu_bench import FULL_ENCODER, FULL_SAM, FULL_TEXT, TINY_ENCODER, TINY_SAM, TINY_TEXT  # noqa: E402

ATTN_MLP = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TARGET_SETS = {"attn_mlp": ATTN_MLP, "experts": ATTN_MLP + ["experts"]}
LOSSES_SHOWN = 20


# ---------------------------------------------------------------------------------------- data




# ---------------------------------------------------------------------------------------- model


def write_checkpoint(folder: Path, tiny: bool, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """A random DeepSeek-OCR-2 of the real (or tiny) shapes plus a processor, saved where ``load_base`` reads it.

    The processor is the devkit's (DeepseekOcr2ImageProcessor + its byte-level tokenizer, ids far
    below the 129280-token vocabulary); the special-token ids of the config are the tokenizer's.
    """
    from transformers import AutoProcessor, DeepseekOcr2Config, DeepseekOcr2ForConditionalGeneration

    from ocrtune_devkit.deepseek import IMAGE, build_tiny_deepseek_ocr2

    processor = AutoProcessor.from_pretrained(build_tiny_deepseek_ocr2())
    tok = processor.tokenizer
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    text = {**(TINY_TEXT if tiny else FULL_TEXT), **ids}
    assert len(tok) <= text["vocab_size"], (len(tok), text["vocab_size"])
    config = DeepseekOcr2Config(
        vision_config={"sam_config": TINY_SAM if tiny else FULL_SAM,
                       "encoder_config": TINY_ENCODER if tiny else FULL_ENCODER},
        text_config=text,
        image_token_id=tok.convert_tokens_to_ids(IMAGE),
        tie_word_embeddings=False,
    )
    config.architectures = ["DeepseekOcr2ForConditionalGeneration"]
    torch.manual_seed(0)
    with torch.device(device):
        model = DeepseekOcr2ForConditionalGeneration._from_config(config, dtype=dtype)
    params = sum(p.numel() for p in model.parameters())
    lm = sum(p.numel() for n, p in model.named_parameters() if "language_model" in n or n.startswith("lm_head"))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    del model
    _free()
    return {"params_m": round(params / 1e6, 1), "language_model_params_m": round(lm / 1e6, 1)}


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)


def _allocated_gib(device: torch.device) -> float | None:
    return torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else None


def load_model(folder: Path, runtime: Any, experts_impl: str | None, trainer: bool,
               fold_sam: bool = True) -> tuple[Any, Any]:
    """The trainer's ``load_base`` (``fold_sam=False``: with transformers' own SAM attention), or plain transformers."""
    if not trainer:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = AutoProcessor.from_pretrained(folder)
        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=runtime.dtype).to(runtime.device)
    else:
        from unittest import mock

        from ocrtune_trainer.training import load_base

        with contextlib.nullcontext() if fold_sam else mock.patch(
                "ocrtune_trainer.families.deepseek_ocr.fold_relative_position_bias", lambda model: 0):
            model, processor = load_base(str(folder), runtime)
    if experts_impl:
        model.set_experts_implementation(experts_impl)
    return model, processor


def trainable_m(model: Any) -> float:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    vision = [n for n, _ in trainable if any(k in n for k in ("sam_model", "qwen2_model", "vision", "projector"))]
    assert not vision, f"vision parameters are trainable: {vision[:3]}"
    return round(sum(p.numel() for _, p in trainable) / 1e6, 3)


def _median_step(ends: list[float], warmup: int) -> tuple[float | None, list[float]]:
    """Step times from consecutive step-end timestamps, the first ``warmup`` steps left out."""
    deltas = [b - a for a, b in zip(ends, ends[1:], strict=False)]  # deltas[i] is step i + 2
    timed = deltas[max(0, warmup - 1):]
    return (statistics.median(timed) if timed else None), [round(t, 4) for t in timed]


# ---------------------------------------------------------------------------------------- variants


def request_for(args: argparse.Namespace, targets: list[str]) -> Any:
    from ocrtune_shared.finetune import FinetuneRequest

    return FinetuneRequest(
        adapter_name="bench-adapter",
        train={"uri": "file:///unused.parquet"},
        hyperparameters={
            "rank": 16, "alpha": 16, "dropout": 0.0, "target_modules": targets,
            "max_steps": args.steps, "warmup_steps": min(5, args.steps), "learning_rate": 2e-4,
            "lr_scheduler": "linear", "weight_decay": 0.001, "per_device_batch_size": args.micro_batch,
            "gradient_accumulation_steps": args.accumulation, "optimizer": "adamw_8bit", "seed": 3407,
        },
    )


TRAINER_VARIANTS = {
    "trainer_unmerged": ("train_adapter with the job's micro-batches as asked", {"max_micro_batch": 1}),
    "trainer": ("train_adapter as a job runs it (the settings' defaults)", {}),
    "trainer_unfolded": ("as trainer, with transformers' SAM attention (its N x N relative-position bias)",
                         {"max_micro_batch": 8}),
    "trainer_mb8_gc": ("8 x 1 with gradient checkpointing (the language model's layers recomputed in backward)",
                       {"max_micro_batch": 8, "gradient_checkpointing": True}),
    "trainer_mb4": ("micro-batches of 4", {"max_micro_batch": 4}),
}


def trainer_variant(variant: str, args: argparse.Namespace, settings: Any) -> tuple[argparse.Namespace, Any]:
    return argparse.Namespace(**vars(args), fold_sam=variant != "trainer_unfolded"), \
        settings.model_copy(update=TRAINER_VARIANTS[variant][1])


def run_trainer(args, folder, rows, targets, runtime, settings, workdir) -> tuple[dict, list[list[dict]]]:
    """``train_adapter`` as the job runs it; returns the result and the micro-batches its collator built."""
    from ocrtune_trainer.families import deepseek_ocr
    from ocrtune_trainer.training import optimizer_name, train_adapter

    request = request_for(args, targets)
    before = _allocated_gib(runtime.device)
    model, processor = load_model(folder, runtime, args.experts_impl, True, args.fold_sam)
    experts_impl = getattr(model.config, "_experts_implementation", None)
    batches: list[list[dict]] = []
    collate_s: list[float] = []

    class RecordingCollator(deepseek_ocr.DeepseekOcr2Collator):
        def __init__(self, inner: deepseek_ocr.DeepseekOcr2Collator) -> None:
            self.__dict__.update(inner.__dict__)

        def __call__(self, batch_rows: list[dict[str, Any]]) -> dict[str, Any]:
            started = time.perf_counter()
            batch = super().__call__(batch_rows)
            collate_s.append(time.perf_counter() - started)
            batches.append([{"image": r["image"], "text": r["text"]} for r in batch_rows])
            return batch

    training = deepseek_ocr.DeepseekOcr2Training
    original = training.sft_inputs

    def recording_inputs(self: Any, *a: Any, **k: Any) -> Any:
        inputs = original(self, *a, **k)
        inputs.data_collator = RecordingCollator(inputs.data_collator)
        return inputs

    ends: list[float] = []
    losses: list[float] = []

    def sink(progress: Any, point: Any) -> None:
        if point is None:
            return
        _sync(runtime.device)
        ends.append(time.perf_counter())
        losses.append(point.loss)

    _reset_peak(runtime.device)
    training.sft_inputs = recording_inputs
    started = time.perf_counter()
    try:
        outcome = train_adapter(request, model, processor, rows, workdir, runtime, settings, sink, lambda: None)
    finally:
        training.sft_inputs = original
    wall = time.perf_counter() - started
    peak = _peak_gib(runtime.device)
    median, timed = _median_step(ends, args.warmup)
    result = {
        "variant": "trainer",
        "optimizer": optimizer_name(request.hyperparameters, runtime),
        "experts_implementation": experts_impl,
        "trainable_params_m": trainable_m(model),
        "steps": len(outcome.loss_curve),
        "step_s_median": median,
        "step_s_timed": timed,
        "samples_per_s": args.micro_batch * args.accumulation / median if median else None,
        "peak_gib": peak,
        "allocated_before_load_gib": before,
        "peak_mb_reported_by_train_adapter": outcome.peak_memory_mb,
        "collate_s_per_micro_batch": statistics.mean(collate_s) if collate_s else None,
        "train_adapter_wall_s": wall,
        "losses": [p.loss for p in outcome.loss_curve],
        "learning_rates": [p.learning_rate for p in outcome.loss_curve],
    }
    if result["losses"][: len(losses)] != losses:
        print(f"note: losses seen by the progress sink {losses} differ from the loss curve", flush=True)
    del model, processor, outcome
    _free()
    result["left_allocated_gib"] = _allocated_gib(runtime.device)
    return result, batches


def run_plain(args, folder, rows, targets, runtime, order: list[list[dict]] | None) -> dict:
    """get_peft_model and a hand-written loop with the trainer's recipe, data and data order."""
    from peft import LoraConfig, get_peft_model
    from transformers import get_scheduler, set_seed

    from ocrtune_trainer.families import deepseek_ocr
    from ocrtune_trainer.training import optimizer_name

    request = request_for(args, targets)
    hp = request.hyperparameters
    device = runtime.device
    before = _allocated_gib(device)
    model, processor = load_model(folder, runtime, args.experts_impl, False)
    experts_impl = getattr(model.config, "_experts_implementation", None)
    regex, parameters = deepseek_ocr.lora_targets(hp.target_modules)
    lora = LoraConfig(r=hp.rank, lora_alpha=hp.alpha, lora_dropout=hp.dropout, bias=hp.bias.value,
                      target_modules=regex, target_parameters=parameters, task_type="CAUSAL_LM")
    set_seed(hp.seed)  # as SFTTrainer does right before get_peft_model: the same LoRA A init
    model = get_peft_model(model, lora)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = optimizer_name(hp, runtime)
    if optim == "adamw_bnb_8bit":
        import bitsandbytes as bnb

        optimizer = bnb.optim.AdamW8bit(params, lr=hp.learning_rate, betas=(0.9, 0.999), eps=1e-8,
                                        weight_decay=hp.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=hp.learning_rate, betas=(0.9, 0.999), eps=1e-8,
                                      weight_decay=hp.weight_decay, fused=optim == "adamw_torch_fused")
    scheduler = get_scheduler(hp.lr_scheduler, optimizer, num_warmup_steps=hp.warmup_steps,
                              num_training_steps=hp.max_steps)
    collator = deepseek_ocr.DeepseekOcr2Collator(processor, deepseek_ocr.DEEPSEEK_OCR2.prompt_text(request.prompt))
    needed = hp.max_steps * hp.gradient_accumulation_steps
    per = hp.per_device_batch_size
    # The trainer's rows in its order, cut into this loop's micro-batches: a trainer that merged a
    # step's micro-batches (8 x 1) saw the same 8 rows a step as one that did not (2 x 4).
    seen = [row for batch in order or [] for row in batch]
    trainer_order = len(seen) >= needed * per
    if not trainer_order:
        seen = [{"image": r.image, "text": r.text} for r in rows]
    order = [[seen[(i * per + j) % len(seen)] for j in range(per)] for i in range(needed)]
    autocast = torch.autocast(device.type, dtype=runtime.dtype, enabled=runtime.bf16 or runtime.fp16)

    ends: list[float] = []
    losses: list[float] = []
    lrs: list[float] = []
    collate_s: list[float] = []
    _reset_peak(device)
    started = time.perf_counter()
    for step in range(hp.max_steps):
        micro = []
        for k in range(hp.gradient_accumulation_steps):
            t = time.perf_counter()
            micro.append(collator(order[step * hp.gradient_accumulation_steps + k]))
            collate_s.append(time.perf_counter() - t)
        num_items = sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro)
        step_loss = torch.zeros((), device=device)
        lrs.append(scheduler.get_last_lr()[0])
        for batch in micro:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with autocast:
                loss = model(**batch, use_cache=False, num_items_in_batch=num_items).loss
            loss.backward()
            step_loss += loss.detach()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(step_loss))  # syncs: the step is done
        ends.append(time.perf_counter())
    wall = time.perf_counter() - started
    peak = _peak_gib(device)
    median, timed = _median_step(ends, args.warmup)
    result = {
        "variant": "plain",
        "optimizer": optim,
        "experts_implementation": experts_impl,
        "trainable_params_m": trainable_m(model),
        "steps": hp.max_steps,
        "step_s_median": median,
        "step_s_timed": timed,
        "samples_per_s": args.micro_batch * args.accumulation / median if median else None,
        "peak_gib": peak,
        "allocated_before_load_gib": before,
        "collate_s_per_micro_batch": statistics.mean(collate_s),
        "train_runtime_s": wall,
        "losses": losses,
        "learning_rates": lrs,
        "data_order": "trainer's" if trainer_order else "sequential",
    }
    del model, optimizer, scheduler, params, processor
    _free()
    result["left_allocated_gib"] = _allocated_gib(device)
    return result


# ---------------------------------------------------------------------------------------- report


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def _fmt(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else "-"


def describe_input(folder: Path, rows: list[Any]) -> dict[str, Any]:
    from transformers import AutoProcessor

    from ocrtune_trainer.families import deepseek_ocr

    processor = AutoProcessor.from_pretrained(folder)
    collator = deepseek_ocr.DeepseekOcr2Collator(processor, deepseek_ocr.DEEPSEEK_OCR2.prompt_text("Free OCR."))
    batch = collator([{"image": r.image, "text": r.text} for r in rows[:2]])
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    return {
        "line_px": list(deepseek_ocr._image(rows[0].image).size),
        "micro_batch_input_ids": list(batch["input_ids"].shape),
        "image_tokens_per_sample": int((batch["input_ids"][0] == image_id).sum()),
        "label_tokens_per_micro_batch": int((batch["labels"] != -100).sum()),
        "pixel_values": list(batch["pixel_values"].shape),
        "pixel_values_local": list(batch["pixel_values_local"].shape) if "pixel_values_local" in batch else None,
    }


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "bitsandbytes"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny DeepSeek-OCR-2 config (CPU smoke test of this script)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (the trainer setting)")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per variant (the job's max_steps)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the median")
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--accumulation", type=int, default=4)
    parser.add_argument("--targets", default="attn_mlp,experts", help="LoRA target sets: attn_mlp, experts")
    parser.add_argument("--variants", default="trainer_unmerged,trainer,trainer_unfolded,plain",
                        help="comma-separated: " + ", ".join(TRAINER_VARIANTS) + ", plain")
    parser.add_argument("--experts-impl", default=None, help="override load_base's experts implementation "
                        "(eager, grouped_mm, batched_mm); default: what load_base gives (reported)")
    parser.add_argument("--samples", help="JSONL of rendered lines: read if it exists, else rendered and written")
    parser.add_argument("--render-only", action="store_true", help="only render --samples, then exit")
    parser.add_argument("--seed", type=int, default=11, help="seed of the rendered lines")
    parser.add_argument("--out", help="write the JSON summary here too")
    args = parser.parse_args()
    args.steps = max(1, args.steps)
    args.warmup = min(max(0, args.warmup), args.steps - 1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    needed = args.micro_batch * args.accumulation * args.steps
    samples, render = load_or_render(args.samples, needed, args.seed)
    if args.render_only:
        return

    from ocrtune_trainer.datasets import DatasetRow
    from ocrtune_trainer.settings import TrainerSettings
    from ocrtune_trainer.training import pick_runtime

    started = time.perf_counter()
    info = versions()
    print(json.dumps(info), flush=True)
    rows = [DatasetRow(image=png, text=text, where=f"line {i}") for i, (text, png) in enumerate(samples)]
    with tempfile.TemporaryDirectory(prefix="adapter-bench-") as tmp:
        tmp_path = Path(tmp)
        settings = TrainerSettings(device=args.device, data_dir=tmp_path / "data", adapter_store=tmp_path / "store")
        runtime = pick_runtime(settings)
        if runtime.device.type == "cuda":
            print(f"device: {torch.cuda.get_device_name(runtime.device)}", flush=True)
        folder = tmp_path / "model"
        t = time.perf_counter()
        shapes = write_checkpoint(folder, args.tiny, runtime.device, runtime.dtype)
        shapes["write_s"] = round(time.perf_counter() - t, 1)
        data = describe_input(folder, rows)
        print(json.dumps({"model": shapes, "input": data, "render": render}), flush=True)

        results: list[dict[str, Any]] = []
        for target_name in args.targets.split(","):
            targets = TARGET_SETS[target_name]
            order = None
            for variant in args.variants.split(","):
                t = time.perf_counter()
                try:
                    if variant in TRAINER_VARIANTS:
                        v_args, v_settings = trainer_variant(variant, args, settings)
                        result, batches = run_trainer(v_args, folder, rows, targets, runtime, v_settings,
                                                      tmp_path / f"work-{target_name}-{variant}")
                        result["variant"] = variant
                        # Collators in DataLoader workers record nothing here: the order comes from
                        # a variant that collates in this process.
                        order = order or batches or None
                    elif variant == "plain":
                        result = run_plain(args, folder, rows, targets, runtime, order)
                    else:
                        raise ValueError(f"unknown variant {variant!r}")
                except Exception as exc:  # one failing variant must not lose the others' numbers
                    traceback.print_exc()
                    result = {"variant": variant, "error": f"{type(exc).__name__}: {exc}"[:2000]}
                    _free()
                result = {"targets": target_name, **result, "variant_wall_s": round(time.perf_counter() - t, 1)}
                results.append(result)
                print(json.dumps({k: v for k, v in result.items() if k not in ("learning_rates",)}), flush=True)

    summary = summarize(args, info, runtime, shapes, data, render, results, time.perf_counter() - started)
    line = json.dumps(summary)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(line + "\n")
    print(line, flush=True)


def summarize(args, info, runtime, shapes, data, render, results, total_s) -> dict[str, Any]:
    print("\ntargets   variant         optimizer     experts_impl  trainable_M  s/step  samples/s  peak_GiB  collate_s/mb")
    for r in results:
        if "error" in r:
            print(f"{r['targets']:<9} {r['variant']:<15} FAILED {r['error'][:200]}")
            continue
        print(f"{r['targets']:<9} {r['variant']:<15} {r['optimizer']:<13} {str(r['experts_implementation']):<13} "
              f"{r['trainable_params_m']:11.3f}  {_fmt(r['step_s_median'], '6.3f')}  "
              f"{_fmt(r['samples_per_s'], '9.2f')}  {_fmt(r['peak_gib'], '8.2f')}  "
              f"{_fmt(r['collate_s_per_micro_batch'], '12.4f')}")
    ratios: dict[str, Any] = {}
    side_by_side: dict[str, Any] = {}
    for target_name in args.targets.split(","):
        by = {r["variant"]: r for r in results if r["targets"] == target_name and "error" not in r}
        plain = by.get("plain")
        trainer = by.get("trainer_unmerged") or by.get("trainer")  # the same micro-batches as plain
        if not (trainer and plain):
            continue
        ratios[target_name] = {
            variant: {
                "step_s": _ratio(by[variant]["step_s_median"], plain["step_s_median"]),
                "samples_per_s": _ratio(by[variant]["samples_per_s"], plain["samples_per_s"]),
                "peak_gib": _ratio(by[variant]["peak_gib"], plain["peak_gib"]),
            }
            for variant in TRAINER_VARIANTS if variant in by
        }
        pairs = list(zip(trainer["losses"][:LOSSES_SHOWN], plain["losses"][:LOSSES_SHOWN], strict=False))
        side_by_side[target_name] = [[i + 1, round(a, 5), round(b, 5)] for i, (a, b) in enumerate(pairs)]
        for variant, ratio in ratios[target_name].items():
            print(f"\n{target_name}: {variant}/plain  s/step x{_fmt(ratio['step_s'], '.3f')}  "
                  f"samples/s x{_fmt(ratio['samples_per_s'], '.3f')}  peak x{_fmt(ratio['peak_gib'], '.3f')}")
        print(f"  losses: {trainer['variant']} vs plain (same rows, same order)")
        print("  step   trainer_loss   plain_loss    diff")
        for step, a, b in side_by_side[target_name]:
            print(f"  {step:4d}   {a:12.5f}  {b:11.5f}  {a - b:+.5f}")
    return {
        "bench": "train_adapter_bench",
        "mode": "tiny" if args.tiny else "full",
        "device": torch.cuda.get_device_name(runtime.device) if runtime.device.type == "cuda" else "cpu",
        "dtype": str(runtime.dtype).removeprefix("torch."),
        "versions": info,
        "model": shapes,
        "input": data,
        "render": render,
        "recipe": {"steps": args.steps, "warmup_excluded": args.warmup, "micro_batch": args.micro_batch,
                   "accumulation": args.accumulation, "lora": "r16 alpha16 dropout0", "lr": 2e-4,
                   "schedule": "linear, 5 warm-up steps", "weight_decay": 0.001, "max_grad_norm": 1.0},
        "results": [{k: v for k, v in r.items() if k != "learning_rates"} for r in results],
        "ratio_trainer_over_plain": ratios,
        "losses_side_by_side": side_by_side,
        "total_s": round(total_s, 1),
    }


if __name__ == "__main__":
    main()
