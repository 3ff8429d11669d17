"""Families prompted through the tokenizer's chat template (Qwen2-VL: the reader, the tiny test model).

The dataset is conversational ``prompt``/``completion`` columns plus an ``image`` column:
trl's SFTTrainer then picks its vision-language collator and masks the prompt (image tokens
included), so only the transcription is learned. The chat template closes the assistant turn
with the end-of-turn token, so the model learns to stop. The prompt turn is
``ocrtune_shared.families.user_turn``, the one the inference service renders.
"""

from __future__ import annotations

from typing import Any

import torch

from ocrtune_shared.errors import ErrorCode
from ocrtune_shared.families import family_named, user_turn
from ocrtune_trainer.datasets import DatasetError, DatasetRow
from ocrtune_trainer.families import SFTInputs, TrainingFamily, register
from ocrtune_trainer.frozen_vision import image_features_without_autograd, is_vision_module


def conversation(instruction: str, text: str) -> dict[str, list]:
    return {
        "prompt": [user_turn(instruction)],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": text}]}],
    }


def sft_dataset(rows: list[DatasetRow], instruction: str) -> Any:
    import datasets

    turn = [
        {
            "role": datasets.Value("string"),
            "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}],
        }
    ]
    features = datasets.Features({"image": datasets.Image(), "prompt": turn, "completion": turn})
    records = [conversation(instruction, row.text) for row in rows]
    # datasets fills the image part's missing "text" with None, which the chat template skips.
    return datasets.Dataset.from_dict(
        {
            "image": [{"bytes": row.image, "path": None} for row in rows],
            "prompt": [r["prompt"] for r in records],
            "completion": [r["completion"] for r in records],
        },
        features=features,
    )


class ChatTemplateTraining(TrainingFamily):
    def __init__(self, family_name: str) -> None:
        self.family = family_named(family_name)

    def sft_inputs(self, model: Any, processor: Any, rows: list[Any], instruction: str, target_names: list[str]) -> SFTInputs:
        return SFTInputs(target_modules=self.language_model_targets(model, target_names),
                         train_dataset=sft_dataset(rows, instruction))

    def check_targets(self, model: Any, names: list[str]) -> None:
        self.language_model_targets(model, names)

    def generation_prompt(self, processor: Any, instruction: str) -> str:
        return self.family.prompt_text(instruction, processor.apply_chat_template)

    def prepare_loaded(self, model: Any) -> None:
        image_features_without_autograd(model)

    def language_model_targets(self, model: Any, names: list[str]) -> list[str] | str:
        """``target_modules`` for peft: the requested names, restricted to the language model.

        A bare list of names would also wrap same-named modules of a vision tower; then the
        family's regex anchored on the language model is used. A bare list is kept when it is
        exact, because it is what vLLM's loader expects to read.
        """
        wanted = set(names)
        linear_names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
        matched = [n for n in linear_names if n.rsplit(".", 1)[-1] in wanted]
        in_language_model = [n for n in matched if "language_model" in n or not is_vision_module(n)]
        missing = sorted(wanted - {n.rsplit(".", 1)[-1] for n in in_language_model})
        if missing:
            known = sorted({n.rsplit(".", 1)[-1] for n in linear_names if not is_vision_module(n)})[:12]
            raise DatasetError(
                ErrorCode.invalid_request,
                f"target modules {missing} are not linear layers of this model's language model (it has e.g. {known})",
                "hyperparameters.target_modules",
            )
        if len(in_language_model) == len(matched):
            return list(names)
        return self.family.lora_target_regex(list(names))


register(ChatTemplateTraining("qwen2_vl"))
