"""The reader: a small pretrained Chinese line-OCR model, shipped in this repository.

A Qwen2-VL of about 8 M parameters (the same architecture, loading path and LoRA names
as the tiny test model, in transformers and in vLLM) that really reads printed Chinese
lines: it was pre-trained from random weights on lines rendered on the fly in the
``PRINT`` style (Noto Sans CJK, ~450 characters). It is the offline demo's base model,
and the base of the benchmarks and of the tests that must show learning rather than
memorising: on ``SCAN`` lines (serif, receipts, scanner noise) it misreads characters,
and a LoRA fine-tune on a few hundred such lines cuts that error on new lines.

``python -m ocrtune_devkit.reader train --out DIR`` is the pre-training script (see
``checkpoints/reader-zh/README.md`` for the command and numbers of the shipped one);
``--steps 20 --batch 8 --device cpu`` is its smoke test. ``reader_checkpoint()`` is the
shipped folder.

Data is rendered in DataLoader workers, one whole batch (PNG-free: PIL images straight
into the Qwen2-VL processor) per item, so the GPU is never waiting on one process.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any

from ocrtune_devkit.adapters import chat_prompt, masked_batch
from ocrtune_devkit.charset import READER_CHARS
from ocrtune_devkit.synthetic import PRINT, SCAN, LineStyle, render_styled

CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "reader-zh"

READER_SPEC: dict[str, Any] = {
    "family": "qwen2_vl",
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vision_depth": 4,
    "vision_embed_dim": 256,
    "vision_heads": 4,
    "vision_mlp_ratio": 4,
    "min_pixels": 3136,
    "max_pixels": 25088,
    "seed": 0,
    "chars": READER_CHARS,
}


def reader_checkpoint() -> Path:
    """The shipped reader's folder (transformers and vLLM load it as it is)."""
    if not (CHECKPOINT / "config.json").exists():
        raise FileNotFoundError(f"the reader checkpoint is missing from {CHECKPOINT} (it ships with the repository)")
    return CHECKPOINT


# --- data ----------------------------------------------------------------------------------
def batches(processor: Any, style: LineStyle, batch: int, seed: int) -> Any:
    """An endless ``IterableDataset`` of training batches in one style, each worker on its own seed."""
    import torch

    class Batches(torch.utils.data.IterableDataset):
        def __iter__(self):  # noqa: ANN204 (a generator, as torch's DataLoader wants)
            return _batch_stream(processor, style, batch, seed)

    return Batches()


def _batch_stream(processor: Any, style: LineStyle, batch: int, seed: int):  # noqa: ANN202
    import torch

    info = torch.utils.data.get_worker_info()
    rng = random.Random(seed * 1000 + (info.id if info else 0))
    prompt = chat_prompt(processor)
    end = processor.tokenizer.eos_token  # <|im_end|>: the model learns to stop
    while True:
        texts = [style.texts(rng) for _ in range(batch)]
        images = [render_styled(t, style, rng) for t in texts]
        # The assistant turn as the chat template closes it, as trl's SFTTrainer trains it.
        yield masked_batch(processor, prompt, images, [t + end + "\n" for t in texts])


# --- evaluation ----------------------------------------------------------------------------
def read_lines(model: Any, processor: Any, images: list, *, batch: int = 64, max_new_tokens: int = 24) -> list[str]:
    """Greedy transcriptions of ``images``, as the services decode."""
    import torch

    prompt = chat_prompt(processor)
    out: list[str] = []
    processor.tokenizer.padding_side = "left"
    try:
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            inputs = processor(text=[prompt] * len(chunk), images=chunk, padding=True, return_tensors="pt")
            inputs = inputs.to(model.device)
            with torch.no_grad():
                ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
            out.extend(processor.batch_decode(ids[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
    finally:
        processor.tokenizer.padding_side = "right"
    return [t.strip() for t in out]


def held_out(style: LineStyle, count: int, seed: int) -> tuple[list, list[str]]:
    rng = random.Random(seed)
    texts = [style.texts(rng) for _ in range(count)]
    return [render_styled(t, style, rng) for t in texts], texts


def corpus_cer(predictions: list[str], references: list[str]) -> float:
    from ocrtune_shared.cer import character_error_rate

    return character_error_rate(predictions, references).corpus_cer


# --- training ------------------------------------------------------------------------------
def train(args: argparse.Namespace) -> dict:
    import torch

    from ocrtune_devkit.tiny_models import new_qwen2_vl, save_qwen2_vl

    device = torch.device(args.device)
    torch.manual_seed(READER_SPEC["seed"])
    model, processor, raw = new_qwen2_vl(READER_SPEC)
    if args.init:  # continue from an earlier run's weights (same spec)
        from transformers import Qwen2VLForConditionalGeneration

        model = Qwen2VLForConditionalGeneration.from_pretrained(args.init, dtype=torch.float32)
    model.to(device).train()
    params = sum(p.numel() for p in model.parameters())
    print(f"reader: {params / 1e6:.2f} M parameters on {device}", flush=True)
    loader = torch.utils.data.DataLoader(
        batches(processor, PRINT, args.batch, args.seed),
        batch_size=None,
        num_workers=args.workers,
        prefetch_factor=4 if args.workers else None,
        persistent_workers=bool(args.workers),
        # One torch thread a worker: the processor's tensor ops otherwise start one thread per
        # core in every worker, and 14 workers x 16 threads ran at 615 samples/s on 16 cores.
        worker_init_fn=lambda _: torch.set_num_threads(1),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:  # linear warm-up, cosine to 5%
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    eval_images, eval_texts = held_out(PRINT, args.eval_lines, seed=10_000 + args.seed)
    history: list[dict] = []
    started = time.monotonic()
    losses: list[float] = []
    for step, batch in enumerate(loader):
        if step >= args.steps or time.monotonic() - started > args.max_minutes * 60:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        last = step + 1 == args.steps or time.monotonic() - started > args.max_minutes * 60
        if (step + 1) % args.log_every == 0 or last:
            elapsed = time.monotonic() - started
            point = {"step": step + 1, "loss": sum(losses) / len(losses), "lr": lr_at(step), "elapsed_s": round(elapsed, 1),
                     "samples_per_s": round((step + 1) * args.batch / elapsed, 1)}
            losses.clear()
            if (step + 1) % args.eval_every == 0 or last:
                model.eval()
                with autocast:
                    point["print_cer"] = corpus_cer(read_lines(model, processor, eval_images), eval_texts)
                model.train()
            history.append(point)
            print(json.dumps(point), flush=True)
    train_s = time.monotonic() - started
    model.eval()
    model.to(torch.float32).cpu()
    save_qwen2_vl(model, processor, raw, READER_SPEC, args.out)
    summary = {"parameters": params, "steps": history[-1]["step"] if history else 0, "planned_steps": args.steps, "batch": args.batch, "lr": args.lr, "warmup": args.warmup,
               "seed": args.seed, "init": str(args.init) if args.init else None, "train_s": round(train_s, 1), "device": str(device),
               "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "history": history}
    (args.out / "pretraining.json").write_text(json.dumps(summary, indent=1))
    return summary


def evaluate(folder: Path, count: int, seed: int) -> dict:
    """The reader's CER on new lines of both styles, read with transformers (fp32, CPU)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    result = {}
    for name, style in (("print", PRINT), ("scan", SCAN)):
        images, texts = held_out(style, count, seed)
        predictions = read_lines(model, processor, images)
        result[name] = {"corpus_cer": round(corpus_cer(predictions, texts), 4), "lines": count,
                        "examples": list(zip(texts[:3], predictions[:3], strict=True))}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ocrtune_devkit.reader")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="pre-train the reader from random weights")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--steps", type=int, default=12000)
    t.add_argument("--batch", type=int, default=192)
    t.add_argument("--lr", type=float, default=1.5e-3)
    t.add_argument("--warmup", type=int, default=400)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--workers", type=int, default=8)
    t.add_argument("--device", default="cuda")
    t.add_argument("--init", type=Path, help="start from this folder's weights instead of random ones")
    t.add_argument("--max-minutes", type=float, default=float("inf"), help="stop early (and save) after this long")
    t.add_argument("--log-every", type=int, default=100)
    t.add_argument("--eval-every", type=int, default=2000)
    t.add_argument("--eval-lines", type=int, default=256)
    e = sub.add_parser("evaluate", help="CER of a reader folder on new print and scan lines")
    e.add_argument("folder", type=Path, nargs="?", default=CHECKPOINT)
    e.add_argument("--lines", type=int, default=200)
    e.add_argument("--seed", type=int, default=777)
    args = parser.parse_args(argv)
    if args.command == "train":
        summary = train(args)
        print(json.dumps({k: v for k, v in summary.items() if k != "history"}))
    else:
        print(json.dumps(evaluate(args.folder, args.lines, args.seed), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
