"""How the inference service serves each model family: engine prompts, engine arguments, vLLM's model class.

The facts both services share (names, which checkpoints belong to a family, the OCR
instruction and the prompt around it, LoRA scope) are in ``ocrtune_shared.families``;
this package adds what only serving needs. Each family's serving code lives in its own
module and registers itself under the shared family's name with ``register``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ocrtune_shared.families import ModelFamily, family_for_checkpoint
from ocrtune_shared.ocr import OCROptions


@dataclass(frozen=True)
class EnginePrompt:
    """What the engine gets for one image: the prompt text and its multimodal data."""

    text: str
    image: Image.Image
    mm_processor_kwargs: dict[str, Any] = field(default_factory=dict)

    def as_vllm(self) -> dict[str, Any]:
        prompt: dict[str, Any] = {"prompt": self.text, "multi_modal_data": {"image": self.image}}
        if self.mm_processor_kwargs:
            prompt["mm_processor_kwargs"] = self.mm_processor_kwargs
        return prompt


class ServingFamily(ABC):
    family: ModelFamily
    """The shared record this serving code is for."""

    @abstractmethod
    def __init__(self, model_dir: Path) -> None: ...

    @property
    def name(self) -> str:
        """Recorded as ``model_family`` in adapter manifests."""
        return self.family.name

    @abstractmethod
    def prompt(self, image: Image.Image, options: OCROptions) -> EnginePrompt:
        """The engine prompt for OCR of ``image`` with these options (``options.prompt`` overrides the task's)."""

    def engine_kwargs(self) -> dict[str, Any]:
        """Extra ``AsyncEngineArgs`` this family needs (e.g. ``logits_processors``)."""
        return {}

    @abstractmethod
    def vllm_model_class(self) -> type:
        """vLLM's model class: its ``hf_to_vllm_mapper`` and module layout decide where LoRA weights land."""


_SERVING: dict[str, type[ServingFamily]] = {}


def register(serving: type[ServingFamily]) -> type[ServingFamily]:
    _SERVING[serving.family.name] = serving
    return serving


def read_config(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / "config.json").read_text())


def family_for(model_dir: Path) -> ServingFamily:
    """The serving code for the checkpoint in ``model_dir``; ``LookupError`` naming the config if none."""
    family = family_for_checkpoint(model_dir)
    if family.name not in _SERVING:
        raise LookupError(f"model family {family.name!r} has no serving code (served: {', '.join(sorted(_SERVING))})")
    return _SERVING[family.name](model_dir)


# Families register themselves on import.
from ocrtune_inference.families import deepseek_ocr, qwen2_vl  # noqa: E402,F401
