"""DeepSeek-OCR-2 in the trainer: its collator, LoRA targets (routed experts by name), vision memory.

Training runs on transformers' native ``DeepseekOcr2ForConditionalGeneration`` (there is no
transformers class for v1). DeepSeek-OCR has no chat template: the prompt is the shared
family's ``<image>\n<instruction>``, the very text the inference service sends vLLM. The
adapters it writes name modules the transformers way; publishing converts them to the
names vLLM maps (``ocrtune_shared.families.convert_for_serving``).
"""

from __future__ import annotations

from typing import Any

from ocrtune_shared.errors import ErrorCode
from ocrtune_shared.families import EXPERTS_TARGET, family_named
from ocrtune_trainer.datasets import DatasetError
from ocrtune_trainer.families import SFTInputs, TrainingFamily, register
from ocrtune_trainer.families.sam_attention import fold_relative_position_bias
from ocrtune_trainer.frozen_vision import image_features_without_autograd

DEEPSEEK_OCR2 = family_named("deepseek_ocr2")


class DeepseekOcr2Collator:
    """Batches of (image, text) for ``DeepseekOcr2ForConditionalGeneration``.

    DeepSeek-OCR has no chat template: the sequence is the prompt with its image tokens
    (as the processor tiles the image), then the answer and EOS. The answer is tokenized
    apart from the prompt, as at inference where the prompt ends the input, so a BPE merge
    across the boundary cannot shift the labels. Everything before the answer is masked.
    """

    def __init__(self, processor: Any, prompt: str) -> None:
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


def lora_targets(names: list[str]) -> tuple[str, list[str] | None]:
    """peft targets: the family's regex on the language model's linear layers, plus the fused
    routed-expert parameters (``target_parameters``, transformers 5) when ``experts`` is asked.

    A bare list of names would also wrap the vision encoder's Qwen2 layers.
    """
    linear = [n for n in names if n != EXPERTS_TARGET]
    if not linear:
        raise ValueError("DeepSeek-OCR LoRA needs at least one linear target besides 'experts'")
    experts = list(DEEPSEEK_OCR2.expert_parameters) if EXPERTS_TARGET in names else None
    return DEEPSEEK_OCR2.lora_target_regex(linear), experts


class DeepseekOcr2Training(TrainingFamily):
    family = DEEPSEEK_OCR2

    def sft_inputs(self, model: Any, processor: Any, rows: list[Any], instruction: str, target_names: list[str]) -> SFTInputs:
        import datasets

        dataset = datasets.Dataset.from_dict(
            {"image": [{"bytes": row.image, "path": None} for row in rows], "text": [row.text for row in rows]},
            features=datasets.Features({"image": datasets.Image(decode=False), "text": datasets.Value("string")}),
        )
        regex, parameters = lora_targets(target_names)
        return SFTInputs(
            target_modules=regex,
            target_parameters=parameters,
            train_dataset=dataset,
            data_collator=DeepseekOcr2Collator(processor, self.family.prompt_text(instruction)),
            # Our collator builds the sequences: trl must neither tokenize the dataset nor drop its columns.
            config={"remove_unused_columns": False, "dataset_kwargs": {"skip_prepare_dataset": True}},
        )

    def generation_prompt(self, processor: Any, instruction: str) -> str:
        return self.family.prompt_text(instruction)

    def prepare_loaded(self, model: Any) -> None:
        image_features_without_autograd(model)
        fold_relative_position_bias(model)

    def check_targets(self, model: Any, names: list[str]) -> None:
        """Submit-time check: every requested name is a linear layer of the language model (or ``experts``).

        Names only found in the vision towers (``qkv``, ``proj``...) are refused by name: vLLM serves
        no LoRA there. Raises ``DatasetError`` (a 422 on the job) like the other target checks.
        """
        import torch

        linear = {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and ".language_model.layers." in f".{name}"
        }
        unknown = sorted(set(names) - linear - {EXPERTS_TARGET})
        if unknown:
            raise DatasetError(
                ErrorCode.invalid_request,
                f"target modules {unknown} are not linear layers of DeepSeek-OCR's language model "
                f"(it has {sorted(linear)}, and 'experts' for the routed experts)",
                "hyperparameters.target_modules",
            )
        if not set(names) - {EXPERTS_TARGET}:
            raise DatasetError(
                ErrorCode.invalid_request,
                "DeepSeek-OCR LoRA needs at least one linear target besides 'experts' (e.g. q_proj, v_proj)",
                "hyperparameters.target_modules",
            )


register(DeepseekOcr2Training())
