"""Training-step benchmark: full-size DeepSeek-OCR-2 (random weights), the reference LoRA recipe.

Plain transformers + peft, bf16, micro-batch 2 x accumulation 4 (8 samples a step), LoRA
r16/alpha16 on the language model (attention + dense/shared MLP; ``+experts`` adds the
routed experts through peft ``target_parameters``), AdamW lr 2e-4. Samples are OCR lines:
one 1024 px global view (257 image tokens), a 6-token prompt, a 24-token answer, the prompt
masked out of the labels.

Variants differ in one setting each, and every figure is printed with its ratio to the
baseline measured in the SAME process (timings alone mean nothing on shared machines):

- ``eager``       transformers' per-expert Python loop (the plain baseline)
- ``grouped_mm``  transformers' grouped-GEMM experts (``experts_implementation="grouped_mm"``)
- ``batched_mm``  transformers' batched-GEMM experts

Usage::

    python bench/train_gpu_bench.py                  # full size, needs a GPU (~80 GB class)
    python bench/train_gpu_bench.py --tiny --steps 2 # CPU smoke test of the script itself

Needs only torch, transformers (>= 5.10, native DeepseekOcr2) and peft.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from dataclasses import asdict, dataclass

import torch

# Real DeepSeek-OCR-2 shapes (docs/models.md); transformers' config defaults are not these.
FULL_TEXT = dict(
    vocab_size=129280, hidden_size=1280, intermediate_size=6848, moe_intermediate_size=896,
    num_hidden_layers=12, num_attention_heads=10, num_key_value_heads=10,
    n_routed_experts=64, num_experts_per_tok=6, n_shared_experts=2,
    mlp_layer_types=["dense"] + ["sparse"] * 11, topk_method="greedy", routed_scaling_factor=1.0,
    max_position_embeddings=8192, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    bos_token_id=0, eos_token_id=1, pad_token_id=2, tie_word_embeddings=False,
)
FULL_SAM = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, image_size=1024,
                output_channels=256, downsample_channels=[512, 896], global_attn_indexes=[2, 5, 8, 11], window_size=14)
FULL_ENCODER = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                    num_key_value_heads=2, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
TINY_TEXT = {**FULL_TEXT, "vocab_size": 512, "hidden_size": 128, "intermediate_size": 256, "moe_intermediate_size": 64,
             "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2, "n_routed_experts": 8,
             "num_experts_per_tok": 2, "mlp_layer_types": ["dense", "sparse"]}
TINY_SAM = {**FULL_SAM, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 1,
            "output_channels": 32, "downsample_channels": [64, 128], "global_attn_indexes": [1]}
TINY_ENCODER = {**FULL_ENCODER, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 1,
                "num_attention_heads": 2, "num_key_value_heads": 1}

LM_LORA_REGEX = (
    r".*language_model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)"
    r"|mlp\.(gate_proj|up_proj|down_proj)|mlp\.shared_experts\.(gate_proj|up_proj|down_proj))"
)
EXPERT_PARAMETERS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
IMAGE_TOKEN_ID = 3
GLOBAL_VIEW_TOKENS = 16 * 16 + 1  # 1024 px / patch 16 / downsample 4, squared, plus the view separator
PROMPT_TOKENS, ANSWER_TOKENS = 6, 24


@dataclass
class Result:
    variant: str
    experts_lora: bool
    trainable_params_m: float
    step_s_median: float
    step_s_all: list[float]
    samples_per_s: float
    peak_gib: float
    final_loss: float


def build_model(tiny: bool, experts_impl: str, device: torch.device, dtype: torch.dtype):
    from transformers import DeepseekOcr2Config, DeepseekOcr2ForConditionalGeneration

    config = DeepseekOcr2Config(
        vision_config={"sam_config": TINY_SAM if tiny else FULL_SAM, "encoder_config": TINY_ENCODER if tiny else FULL_ENCODER},
        text_config=TINY_TEXT if tiny else FULL_TEXT,
        image_token_id=IMAGE_TOKEN_ID,
    )
    config._experts_implementation = experts_impl
    torch.manual_seed(0)
    with torch.device(device):
        model = DeepseekOcr2ForConditionalGeneration._from_config(
            config, dtype=dtype, experts_implementation=experts_impl, attn_implementation="sdpa"
        )
    return model


def make_batch(vocab: int, micro_batch: int, device: torch.device, dtype: torch.dtype, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    length = 1 + GLOBAL_VIEW_TOKENS + PROMPT_TOKENS + ANSWER_TOKENS
    ids = torch.randint(10, vocab, (micro_batch, length), generator=g)
    ids[:, 0] = 0
    ids[:, 1 : 1 + GLOBAL_VIEW_TOKENS] = IMAGE_TOKEN_ID
    labels = ids.clone()
    labels[:, : length - ANSWER_TOKENS] = -100
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "labels": labels.to(device),
        "pixel_values": torch.randn(micro_batch, 3, 1024, 1024, generator=g).to(device, dtype),
        "num_local_patches": torch.zeros(micro_batch, dtype=torch.long).to(device),
    }


def run_variant(args: argparse.Namespace, experts_impl: str, experts_lora: bool) -> Result:
    from peft import LoraConfig, get_peft_model

    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = build_model(args.tiny, experts_impl, device, dtype)
    lora = LoraConfig(
        r=16, lora_alpha=16, lora_dropout=0.0, target_modules=LM_LORA_REGEX,
        target_parameters=EXPERT_PARAMETERS if experts_lora else None,
    )
    model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert not any(("vision" in n or "sam" in n) for n, p in model.named_parameters() if p.requires_grad)
    model.train()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=2e-4, weight_decay=0.001,
        fused=device.type == "cuda",
    )
    vocab = model.config.text_config.vocab_size
    batches = [make_batch(vocab, args.micro_batch, device, dtype, seed) for seed in range(args.accumulation)]
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times, loss_value = [], float("nan")
    for step in range(args.warmup + args.steps):
        started = time.perf_counter()
        for batch in batches:
            loss = model(**batch).loss / args.accumulation
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        loss_value = float(loss) * args.accumulation
        if step >= args.warmup:
            times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    median = statistics.median(times)
    result = Result(
        variant=experts_impl, experts_lora=experts_lora, trainable_params_m=trainable / 1e6,
        step_s_median=median, step_s_all=[round(t, 4) for t in times],
        samples_per_s=args.micro_batch * args.accumulation / median, peak_gib=peak, final_loss=loss_value,
    )
    del model, optimizer, batches
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny config (CPU smoke test of this script)")
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--accumulation", type=int, default=4)
    parser.add_argument("--variants", default="eager,grouped_mm,batched_mm")
    parser.add_argument("--experts", choices=["off", "on", "both"], default="both", help="routed-expert LoRA")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()

    if torch.cuda.is_available() and not args.cpu:
        print(f"device: {torch.cuda.get_device_name()} torch {torch.__version__}", flush=True)
    import peft
    import transformers

    print(f"transformers {transformers.__version__} peft {peft.__version__}", flush=True)
    experts_modes = {"off": [False], "on": [True], "both": [False, True]}[args.experts]
    results: list[Result] = []
    for experts_lora in experts_modes:
        for variant in args.variants.split(","):
            try:
                result = run_variant(args, variant, experts_lora)
            except Exception as exc:  # a variant the installed versions cannot run is reported, not fatal
                print(f"{variant:>11} experts_lora={experts_lora}: FAILED {type(exc).__name__}: {exc}", flush=True)
                continue
            results.append(result)
            print(json.dumps(asdict(result)), flush=True)

    print("\nvariant      experts  step_s  samples/s  peak_GiB  trainable_M  x_samples/s  x_peak  (vs eager, same experts)")
    for r in results:
        base = next((b for b in results if b.variant == "eager" and b.experts_lora == r.experts_lora), None)
        speed = r.samples_per_s / base.samples_per_s if base else float("nan")
        memory = r.peak_gib / base.peak_gib if base and base.peak_gib == base.peak_gib else float("nan")
        print(f"{r.variant:<12} {str(r.experts_lora):<8} {r.step_s_median:6.3f}  {r.samples_per_s:9.2f}  "
              f"{r.peak_gib:8.2f}  {r.trainable_params_m:11.1f}  {speed:11.2f}  {memory:6.2f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump([asdict(r) for r in results], out, indent=1)


if __name__ == "__main__":
    main()
