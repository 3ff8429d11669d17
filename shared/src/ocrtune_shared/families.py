"""The model families both services know, one record each: the single source of their facts.

A family is what an adapter's manifest names (``model_family``) and what each service
picks its code by: the inference service's ``families/`` (engine prompts, resolution
modes, vLLM's model class) and the trainer's ``families/`` (dataset, collator, LoRA
targets). What both sides must agree on lives here, so training and serving cannot drift:

- which checkpoints belong to the family (``config.json`` ``model_type`` / ``architectures``);
- the prompt: the OCR instruction for each task and how it is wrapped around the image,
  the SAME text at training and at serving (``prompt_text`` / ``user_turn``);
- where LoRA goes: the language model's layers (``lora_scope``), never a vision tower,
  since vLLM serves no LoRA there; routed experts only by name (``expert_parameters``);
- how an adapter is written for vLLM (``serving_layout``; ``adapter_layouts`` converts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ocrtune_shared.adapters import ServingLayout
from ocrtune_shared.ocr import OCRTask

IMAGE_PLACEHOLDER = "<image>"
"""DeepSeek-OCR's image token: the processor expands it into the image's vision tokens."""

EXPERTS_TARGET = "experts"
"""The target-module name a fine-tune request uses to ask for LoRA on routed MoE experts."""


class PromptStyle(str, Enum):
    chat_template = "chat_template"
    """The tokenizer's chat template around one user turn: the image, then the instruction."""
    image_newline = "image_newline"
    """DeepSeek-OCR's plain prompt, no template: ``<image>``, a newline, the instruction."""


@dataclass(frozen=True)
class ModelFamily:
    name: str
    """Recorded as ``model_family`` in adapter manifests."""
    model_types: tuple[str, ...]
    """``config.json`` ``model_type`` values of its checkpoints (transformers' native and the original layout)."""
    architectures: tuple[str, ...]
    prompt_style: PromptStyle
    instructions: dict[OCRTask, str]
    serving_layout: ServingLayout
    lora_scope: str
    """Regex of the language-model modules whose linear layers take LoRA (``<scope>.<name>``)."""
    expert_parameters: tuple[str, ...] = field(default=())
    """Fused routed-expert parameters peft reaches by ``target_parameters`` (transformers 5), if any."""

    def instruction(self, task: OCRTask = OCRTask.free_ocr, override: str | None = None) -> str:
        return override or self.instructions[task]

    def prompt_text(self, instruction: str, apply_chat_template: Callable[..., Any] | None = None) -> str:
        """The prompt before image expansion. Chat-template families need the tokenizer's or
        processor's ``apply_chat_template``; both services pass theirs, so the text is the same."""
        if self.prompt_style is PromptStyle.image_newline:
            return f"{IMAGE_PLACEHOLDER}\n{instruction}"
        if apply_chat_template is None:
            raise ValueError(f"{self.name} prompts are rendered by the tokenizer's chat template")
        return apply_chat_template([user_turn(instruction)], add_generation_prompt=True, tokenize=False)

    def lora_target_regex(self, names: list[str]) -> str:
        """peft ``target_modules`` for these linear-layer names, anchored on the language model."""
        import re

        return rf".*{self.lora_scope}\.({'|'.join(re.escape(n) for n in names)})$"


def user_turn(instruction: str) -> dict[str, Any]:
    """The one user turn of an OCR conversation: the image, then the instruction."""
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}


_DEEPSEEK_INSTRUCTIONS = {
    OCRTask.free_ocr: "Free OCR.",
    OCRTask.markdown: "<|grounding|>Convert the document to markdown.",
}
# Layer 0 is a dense MLP, the others MoE with shared experts (nn.Linear) and fused routed experts.
_DEEPSEEK_LORA_SCOPE = r"language_model\.layers\.\d+\.(self_attn|mlp|mlp\.shared_experts)"

FAMILIES: dict[str, ModelFamily] = {
    f.name: f
    for f in (
        ModelFamily(
            name="qwen2_vl",
            model_types=("qwen2_vl",),
            architectures=("Qwen2VLForConditionalGeneration",),
            prompt_style=PromptStyle.chat_template,
            instructions={OCRTask.free_ocr: "Free OCR.", OCRTask.markdown: "Convert the document to markdown."},
            serving_layout=ServingLayout.peft,
            lora_scope=r"language_model\.layers\.\d+\.(self_attn|mlp)",
        ),
        ModelFamily(
            name="deepseek_ocr",
            model_types=("deepseek_ocr",),
            architectures=("DeepseekOCRForCausalLM",),
            prompt_style=PromptStyle.image_newline,
            instructions=_DEEPSEEK_INSTRUCTIONS,
            serving_layout=ServingLayout.vllm_deepseek_ocr,
            lora_scope=_DEEPSEEK_LORA_SCOPE,
            expert_parameters=("mlp.experts.gate_up_proj", "mlp.experts.down_proj"),
        ),
        ModelFamily(
            name="deepseek_ocr2",
            model_types=("deepseek_ocr2",),
            architectures=("DeepseekOCR2ForCausalLM", "DeepseekOcr2ForConditionalGeneration"),
            prompt_style=PromptStyle.image_newline,
            instructions=_DEEPSEEK_INSTRUCTIONS,
            serving_layout=ServingLayout.vllm_deepseek_ocr,
            lora_scope=_DEEPSEEK_LORA_SCOPE,
            expert_parameters=("mlp.experts.gate_up_proj", "mlp.experts.down_proj"),
        ),
    )
}
FAMILY_NAMES = tuple(FAMILIES)


def family_named(name: str) -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise LookupError(f"unknown model family {name!r} (known: {', '.join(FAMILY_NAMES)})") from None


def family_for_config(config: dict[str, Any]) -> ModelFamily:
    """The family of a checkpoint's ``config.json``; architectures first (DeepSeek's original
    layout shares ``model_type`` ``deepseek_vl_v2`` between v1 and v2)."""
    architectures = set(config.get("architectures") or [])
    for family in FAMILIES.values():
        if architectures & set(family.architectures):
            return family
    for family in FAMILIES.values():
        if config.get("model_type") in family.model_types:
            return family
    raise LookupError(
        f"no model family for model_type={config.get('model_type')!r} architectures={sorted(architectures)!r} "
        f"(known families: {', '.join(FAMILY_NAMES)})"
    )


def family_for_checkpoint(model_dir: Path | str) -> ModelFamily:
    import json

    return family_for_config(json.loads((Path(model_dir) / "config.json").read_text()))


def convert_for_serving(family: ModelFamily, source: Path, target: Path, *, base_model: str | None = None) -> list[str]:
    """Write the adapter in ``source`` to ``target`` in the family's serving layout; returns its target modules.

    ``target`` may be ``source`` (rewritten in place). Raises ``adapter_layouts.AdapterLayoutError``
    naming the modules vLLM cannot serve.
    """
    import json
    import shutil
    import tempfile

    from ocrtune_shared.adapter_layouts import convert_adapter_folder
    from ocrtune_shared.adapters import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE

    target.mkdir(parents=True, exist_ok=True)
    if family.serving_layout is ServingLayout.vllm_deepseek_ocr:
        with tempfile.TemporaryDirectory(dir=target) as scratch:
            report = convert_adapter_folder(source, Path(scratch), base_model=base_model)
            for name in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE):
                shutil.move(str(Path(scratch) / name), target / name)
        return report.target_modules
    if source.resolve() != target.resolve():
        for name in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE):
            shutil.copy2(source / name, target / name)
    config = json.loads((target / ADAPTER_CONFIG_FILE).read_text())
    if base_model is not None:
        config["base_model_name_or_path"] = base_model
        (target / ADAPTER_CONFIG_FILE).write_text(json.dumps(config, indent=2))
    modules = config.get("target_modules") or []
    return sorted(modules) if isinstance(modules, list) else [modules]
