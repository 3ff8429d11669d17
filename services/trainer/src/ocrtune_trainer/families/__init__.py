"""How the trainer trains each model family: its dataset and collator, LoRA targets, generation prompt.

The facts both services share (the prompt around the image, the language model's LoRA
scope, the serving layout) are in ``ocrtune_shared.families``; this package adds what only
training needs. ``training_family_for(model)`` picks by the loaded model's config.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from ocrtune_shared.families import ModelFamily, family_for_config


@dataclass
class SFTInputs:
    """What ``train_adapter`` hands trl's ``SFTTrainer`` for one family."""

    target_modules: list[str] | str
    train_dataset: Any
    target_parameters: list[str] | None = None
    data_collator: Any = None
    """None: trl's own vision-language collator (chat-template families)."""
    config: dict[str, Any] = field(default_factory=dict)
    """Extra ``SFTConfig`` keys."""


class TrainingFamily(ABC):
    family: ModelFamily

    @abstractmethod
    def sft_inputs(self, model: Any, processor: Any, rows: list[Any], instruction: str, target_names: list[str]) -> SFTInputs:
        """Dataset, collator and LoRA targets for training ``model`` on ``rows`` (image, text)."""

    @abstractmethod
    def check_targets(self, model: Any, names: list[str]) -> None:
        """Raise ``DatasetError`` (a 422 on the job) unless every name is a LoRA target of the language model."""

    @abstractmethod
    def generation_prompt(self, processor: Any, instruction: str) -> str:
        """The prompt text evaluation generates from: the text the inference service serves."""

    @abstractmethod
    def prepare_loaded(self, model: Any) -> None:
        """Adjust a freshly loaded base model for training and evaluation (frozen vision, memory)."""


_TRAINING: dict[str, TrainingFamily] = {}


def register(training: TrainingFamily) -> TrainingFamily:
    _TRAINING[training.family.name] = training
    return training


def training_family_for(model: Any) -> TrainingFamily:
    """The training code for a loaded (or meta-device) transformers model; ``LookupError`` if none."""
    config = getattr(model, "config", None)
    family = family_for_config({"model_type": getattr(config, "model_type", None),
                                "architectures": getattr(config, "architectures", None) or []})
    if family.name not in _TRAINING:
        raise LookupError(f"model family {family.name!r} cannot be trained here (trainable: {', '.join(sorted(_TRAINING))})")
    return _TRAINING[family.name]


# Families register themselves on import.
from ocrtune_trainer.families import chat_template, deepseek_ocr  # noqa: E402,F401
