"""Model families: prompt format, image preparation and LoRA naming for one kind of checkpoint.

A family is picked from the checkpoint's ``config.json`` (``model_type`` /
``architectures``). Each family lives in its own module and registers itself with
``register``; adding a model means adding a module here and importing it below.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

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


class ModelFamily(ABC):
    name: str
    """Recorded as ``model_family`` in adapter manifests."""

    @classmethod
    @abstractmethod
    def matches(cls, config: dict[str, Any]) -> bool:
        """Whether this family serves a checkpoint with this ``config.json``."""

    @abstractmethod
    def __init__(self, model_dir: Path) -> None: ...

    @abstractmethod
    def prompt(self, image: Image.Image, options: OCROptions) -> EnginePrompt:
        """The engine prompt for OCR of ``image`` with these options."""

    def chat_prompt(self, image: Image.Image, instruction: str, options: OCROptions) -> EnginePrompt:
        """The engine prompt for an OpenAI-style chat turn (an image and the user's text)."""
        return self.prompt(image, options.model_copy(update={"prompt": instruction or None}))

    def engine_kwargs(self) -> dict[str, Any]:
        """Extra ``AsyncEngineArgs`` this family needs (e.g. ``hf_overrides``)."""
        return {}

    @abstractmethod
    def vllm_model_class(self) -> type:
        """vLLM's model class: its ``hf_to_vllm_mapper`` and module layout decide where LoRA weights land."""


_FAMILIES: list[type[ModelFamily]] = []


def register(family: type[ModelFamily]) -> type[ModelFamily]:
    _FAMILIES.append(family)
    return family


def read_config(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / "config.json").read_text())


def family_for(model_dir: Path) -> ModelFamily:
    """The family serving the checkpoint in ``model_dir``; ``LookupError`` naming the config if none."""
    config = read_config(model_dir)
    for family in _FAMILIES:
        if family.matches(config):
            return family(model_dir)
    known = ", ".join(f.name for f in _FAMILIES)
    raise LookupError(
        f"no model family for model_type={config.get('model_type')!r} "
        f"architectures={config.get('architectures')!r} (known families: {known})"
    )


def family_names() -> list[str]:
    return [f.name for f in _FAMILIES]


# Families register themselves on import.
from ocrtune_inference.families import deepseek_ocr, qwen2_vl  # noqa: E402,F401
