"""DeepSeek-OCR (v1, v2) in the trainer: the adapter conversion run at publish time.

Training happens on transformers' native ``DeepseekOcr2ForConditionalGeneration``; its
adapters name modules ``model.language_model.layers.N...``, which vLLM's DeepSeek-OCR
mapper does not know (the adapter would load and do nothing). ``convert_in_place``
rewrites the staged adapter files to the names vLLM maps, splitting routed-expert LoRA
(peft ``target_parameters``) into vLLM's per-expert layout; the logic is shared with the
inference service's import path (``ocrtune_shared.adapter_layouts``).
"""

from __future__ import annotations

import functools
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrtune_shared.adapter_layouts import convert_adapter_folder
from ocrtune_shared.adapters import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, ServingLayout

MODEL_FAMILIES = ("deepseek_ocr2", "deepseek_ocr")
"""``model_type`` values of the checkpoints this conversion serves (native v2; v1 original layout)."""


def convert_in_place(folder: Path) -> ServingLayout:
    """Rewrite the PEFT files in ``folder`` for vLLM; raises ``AdapterLayoutError`` naming unservable modules."""
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        report = convert_adapter_folder(folder, Path(scratch))
        for name in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE):
            shutil.move(str(Path(scratch) / name), folder / name)
    return report.serving_layout


# DeepSeek's own training prompt (the reference notebook's), trailing space included.
TRAIN_PROMPT = "<image>\nFree OCR. "


class DeepseekOcr2Collator:
    """Batches of (image, text) for ``DeepseekOcr2ForConditionalGeneration``.

    DeepSeek-OCR has no chat template: the sequence is the prompt with its image tokens
    (as the processor tiles the image), then the answer and EOS. The answer is tokenized
    apart from the prompt, as at inference where the prompt ends the input, so a BPE merge
    across the boundary cannot shift the labels. Everything before the answer is masked.
    """

    def __init__(self, processor: Any, prompt: str = TRAIN_PROMPT) -> None:
        self.processor = processor
        self.prompt = prompt
        self.tokenizer = processor.tokenizer

    def example(self, image: Any, text: str) -> dict[str, Any]:
        prompt = self.processor(images=image, text=self.prompt, return_tensors="pt")
        answer = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        prompt_ids = prompt["input_ids"][0].tolist()
        return {
            "input_ids": prompt_ids + answer,
            "labels": [-100] * len(prompt_ids) + answer,
            "pixel_values": prompt["pixel_values"],
            "pixel_values_local": prompt.get("pixel_values_local"),
            "num_local_patches": prompt["num_local_patches"].tolist(),
        }

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        examples = [self.example(_image(row["image"]), row["text"]) for row in rows]
        width = max(len(e["input_ids"]) for e in examples)
        pad = self.tokenizer.pad_token_id
        # Right padding: positions of the real tokens stay those of an unpadded sequence.
        input_ids = torch.tensor([e["input_ids"] + [pad] * (width - len(e["input_ids"])) for e in examples])
        labels = torch.tensor([e["labels"] + [-100] * (width - len(e["labels"])) for e in examples])
        attention_mask = torch.tensor(
            [[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in examples]
        )
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "pixel_values": torch.cat([e["pixel_values"] for e in examples]),
            "num_local_patches": torch.tensor([n for e in examples for n in e["num_local_patches"]]),
        }
        local = [e["pixel_values_local"] for e in examples if e["pixel_values_local"] is not None]
        if local:
            batch["pixel_values_local"] = torch.cat(local)
        return batch


def _image(value: Any) -> Any:
    """A PIL image from a datasets ``Image`` value, raw bytes or a PIL image."""
    import io

    from PIL import Image

    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, dict):
        value = value.get("bytes")
    return Image.open(io.BytesIO(value)).convert("RGB")


def is_deepseek(model: Any) -> bool:
    return getattr(getattr(model, "config", None), "model_type", None) in MODEL_FAMILIES


# Routed experts are fused 3-D parameters in transformers 5: peft reaches them by
# target_parameters only. Asked for by the job's target name "experts".
EXPERT_TARGET_PARAMETERS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]


def prompt_text(prompt: str) -> str:
    """DeepSeek's prompt for an instruction: image placeholder, newline, instruction (no chat template)."""
    return f"<image>\n{prompt}"


def train_prompt(prompt: str) -> str:
    """The training prompt: as at inference plus the notebook's trailing space before the answer."""
    return prompt_text(prompt).rstrip() + " "


@dataclass
class SFTOverrides:
    """What DeepSeek-OCR-2 changes in ``train_adapter``: LoRA targets, dataset, collator, config keys."""

    target_modules: str
    target_parameters: list[str] | None
    train_dataset: Any
    data_collator: DeepseekOcr2Collator
    config: dict[str, Any]


def lora_targets(names: list[str]) -> tuple[str, list[str] | None]:
    """peft targets for DeepSeek-OCR-2: a regex on the language model, plus expert parameters when asked.

    A bare list of names would also wrap the vision encoder's Qwen2 layers (models.md).
    """
    linear = [n for n in names if n != "experts"]
    if not linear:
        raise ValueError("DeepSeek-OCR LoRA needs at least one linear target besides 'experts'")
    alternatives = "|".join(re.escape(n) for n in linear)
    regex = rf".*language_model\.layers\.\d+\.(self_attn|mlp|mlp\.shared_experts)\.({alternatives})$"
    return regex, (list(EXPERT_TARGET_PARAMETERS) if "experts" in names else None)


def sft_overrides(model: Any, processor: Any, rows: list[Any], prompt: str, target_names: list[str]) -> SFTOverrides | None:
    """``SFTTrainer`` inputs for DeepSeek-OCR-2, or None for other families (they use the chat-template path)."""
    if not is_deepseek(model):
        return None
    import datasets

    dataset = datasets.Dataset.from_dict(
        {"image": [{"bytes": row.image, "path": None} for row in rows], "text": [row.text for row in rows]},
        features=datasets.Features({"image": datasets.Image(decode=False), "text": datasets.Value("string")}),
    )
    regex, parameters = lora_targets(target_names)
    return SFTOverrides(
        target_modules=regex,
        target_parameters=parameters,
        train_dataset=dataset,
        data_collator=DeepseekOcr2Collator(processor, train_prompt(prompt)),
        # Our collator builds the sequences: trl must neither tokenize the dataset nor drop its columns.
        config={"remove_unused_columns": False, "dataset_kwargs": {"skip_prepare_dataset": True}},
    )


def encode_images_in_chunks(model: Any, images_per_pass: int) -> bool:
    """Run DeepSeek-OCR-2's vision tower on at most ``images_per_pass`` views at a time, without autograd.

    Its SAM encoder's global-attention layers add a decomposed relative-position bias, which
    transformers materialises as an (images, heads, 4096, 4096) tensor, and with such a mask SDPA
    has no fused kernel: about 0.8 GiB of transient memory per 1024 px view, so a training micro-
    batch of 8 line images peaked 4.8 GiB above one of 2 (H200, 2026-12-06; gradient checkpointing
    changed nothing, the language model's activations being small), and evaluation's batches of 8
    alike. Without autograd (a frozen tower, ``frozen_vision``; generation) chunking changes no
    result. Returns False for models without this tower.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    tower = getattr(getattr(base, "model", None), "vision_tower", None)
    if tower is None or not is_deepseek(base) or images_per_pass < 1:
        return False
    forward = tower.forward

    @functools.wraps(forward)
    def chunked(pixel_values: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        if pixel_values.shape[0] <= images_per_pass or torch.is_grad_enabled():
            return forward(pixel_values, *args, **kwargs)
        outputs = [forward(part, *args, **kwargs) for part in pixel_values.split(images_per_pass)]
        return type(outputs[0])(last_hidden_state=torch.cat([o.last_hidden_state for o in outputs]))

    tower.forward = chunked
    return True


def check_targets(model: Any, names: list[str]) -> None:
    """Submit-time check: every requested name is a linear layer of the language model (or ``experts``).

    Names only found in the vision towers (``qkv``, ``proj``...) are refused by name: vLLM serves
    no LoRA there. Raises ``DatasetError`` (a 422 on the job) like the other target checks.
    """
    import torch

    from ocrtune_shared.errors import ErrorCode
    from ocrtune_trainer.datasets import DatasetError

    linear = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".language_model.layers." in f".{name}"
    }
    unknown = sorted(set(names) - linear - {"experts"})
    if unknown:
        raise DatasetError(
            ErrorCode.invalid_request,
            f"target modules {unknown} are not linear layers of DeepSeek-OCR's language model "
            f"(it has {sorted(linear)}, and 'experts' for the routed experts)",
            "hyperparameters.target_modules",
        )
    if not set(names) - {"experts"}:
        raise DatasetError(
            ErrorCode.invalid_request,
            "DeepSeek-OCR LoRA needs at least one linear target besides 'experts' (e.g. q_proj, v_proj)",
            "hyperparameters.target_modules",
        )
