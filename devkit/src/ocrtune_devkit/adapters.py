"""Real LoRA adapters for the tiny Qwen2-VL, trained in seconds, cached, publishable.

Tests and benchmarks need adapters whose effect is known in advance:

- ``AdapterSpec(fixed_text="...")``: answers that one string for any line image, so a
  test can tell which adapter (or the base model) decoded a request from its text;
- ``AdapterSpec(fixed_text=None)``: learns to read the training images themselves.

Training is the recipe seen working here (docs/models.md, vLLM on the CPU): LoRA on q/k/v/o/gate/up/down
of the language model, AdamW lr 2e-3, all images each step, prompt masked. The
folder name carries a digest of the spec and of the base checkpoint folder, so a
changed spec never reuses a stale adapter, and it appears by one rename.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from ocrtune_devkit.cache import DEFAULT_CACHE, build_once

OCR_PROMPT = "Free OCR."
QWEN2_VL_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Only the language model: bare names would also wrap the vision tower, which vLLM serves without LoRA.
_LANGUAGE_MODEL_TARGETS = r"model\.language_model\.layers\.\d+\.(self_attn|mlp)\.(" + "|".join(
    QWEN2_VL_LORA_TARGETS
) + r")"


@dataclass(frozen=True)
class AdapterSpec:
    fixed_text: str | None = None
    """The one answer to train for every image; None: read the images' own text."""
    rank: int = 16
    alpha: int = 16
    steps: int = 50
    learning_rate: float = 2e-3
    samples: int = 8
    sample_seed: int = 7
    seed: int = 0


def chat_prompt(processor, prompt: str = OCR_PROMPT) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def masked_batch(processor, prompt: str, images: list, answers: list[str]) -> dict:
    """``prompt + answer`` for each line image, with labels only on the answers (the prompt,
    image tokens included, and the padding are masked out), as trl's SFTTrainer masks them.
    Every line image has the same size, so every prompt has the length of the first."""
    processor.tokenizer.padding_side = "right"
    batch = processor(text=[prompt + a for a in answers], images=images, return_tensors="pt", padding=True)
    prompt_len = processor(text=[prompt], images=images[:1], return_tensors="pt")["input_ids"].shape[1]
    labels = batch["input_ids"].clone()
    labels[:, :prompt_len] = -100
    labels[batch["attention_mask"] == 0] = -100
    batch["labels"] = labels
    return dict(batch)


def build_tiny_adapter(
    spec: AdapterSpec, model_dir: Path | str, cache_dir: Path | str | None = None, *, force: bool = False
) -> Path:
    """Train (once) and return a PEFT adapter folder for the tiny model in ``model_dir``."""
    model_dir = Path(model_dir)
    cache_dir = Path(cache_dir or DEFAULT_CACHE) / "adapters"
    key = json.dumps({"spec": asdict(spec), "model": model_dir.name}, sort_keys=True, ensure_ascii=False)
    target = cache_dir / f"tiny-lora-{hashlib.sha256(key.encode()).hexdigest()[:12]}"

    def train(folder: Path) -> None:
        _train(spec, model_dir, folder)
        (folder / "ocrtune_adapter_spec.json").write_text(key)

    return build_once(target, train, marker="adapter_model.safetensors", force=force)


def _train(spec: AdapterSpec, model_dir: Path, out: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    from ocrtune_devkit.synthetic import make_samples

    torch.manual_seed(spec.seed)
    processor = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=0.0, target_modules=_LANGUAGE_MODEL_TARGETS),
    )
    samples = make_samples(spec.samples, seed=spec.sample_seed)
    prompt = chat_prompt(processor)
    end = processor.tokenizer.eos_token
    answers = [(spec.fixed_text if spec.fixed_text is not None else s.text) + end for s in samples]
    images = [s.image() for s in samples]
    batch = masked_batch(processor, prompt, images, answers)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=spec.learning_rate)
    model.train()
    for _ in range(spec.steps):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out, safe_serialization=True)


def publish_tiny_adapter(store, name: str, adapter_dir: Path | str, base_model: str, **manifest_overrides):
    """Publish the PEFT folder ``adapter_dir`` as a new version of ``name`` in ``store`` (an AdapterStore)."""
    from ocrtune_shared.adapters import AdapterManifest, ServingLayout

    adapter_dir = Path(adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())

    def write(folder: Path) -> AdapterManifest:
        for file_name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy2(adapter_dir / file_name, folder / file_name)
        fields = dict(
            name=name,
            version=1,
            base_model=base_model,
            model_family="qwen2_vl",
            rank=int(config["r"]),
            alpha=int(config["lora_alpha"]),
            target_modules=list(QWEN2_VL_LORA_TARGETS),
            serving_layout=ServingLayout.peft,
            created_at=datetime.now(timezone.utc),
        )
        fields.update(manifest_overrides)
        return AdapterManifest(**fields)

    return store.publish(name, write)
