"""CER of a model on the eval rows: greedy generation, then ``ocrtune_shared.cer``.

The "after" figure is measured on the adapter reloaded from its saved files into a
fresh base model, the way it will be served: an adapter that silently fails to load
(peft's key renaming dropped every tensor on DeepSeek-OCR-2, docs/models.md) would
otherwise report the trained in-memory model's CER. ``load_adapter_verified``
refuses to return a model unless every tensor of the file landed on a module.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ocrtune_shared.adapters import ADAPTER_WEIGHTS_FILE
from ocrtune_shared.cer import CERResult, character_error_rate
from ocrtune_shared.images import decode_image
from ocrtune_trainer.datasets import DatasetRow
from ocrtune_trainer.families import training_family_for
from ocrtune_trainer.training import TrainingStopped


class AdapterReloadError(RuntimeError):
    pass


def transcribe(
    model: Any,
    processor: Any,
    images: list[bytes],
    prompt: str,
    *,
    max_new_tokens: int,
    batch_size: int = 8,
    should_stop: Callable[[], str | None] | None = None,
) -> list[str]:
    """Greedy transcriptions of ``images``, batched, in order."""
    tokenizer = processor.tokenizer
    saved_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation appends to the right end of every row
    stop_ids = sorted(
        {
            i
            for i in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>"))
            if isinstance(i, int) and i >= 0
        }
    )
    text = training_family_for(model).generation_prompt(processor, prompt)
    outputs: list[str] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            if should_stop is not None and (reason := should_stop()):
                raise TrainingStopped(reason)
            batch = [decode_image(data) for data in images[start : start + batch_size]]
            inputs = processor(text=[text] * len(batch), images=batch, padding=True, return_tensors="pt")
            inputs = inputs.to(model.device)
            with torch.inference_mode():
                generated = model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=stop_ids or None,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = generated[:, inputs["input_ids"].shape[1] :]
            outputs.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = saved_side
        model.train(was_training)
    return [o.strip() for o in outputs]


def evaluate(
    model: Any,
    processor: Any,
    rows: list[DatasetRow],
    prompt: str,
    *,
    max_new_tokens: int,
    batch_size: int,
    should_stop: Callable[[], str | None] | None = None,
) -> tuple[CERResult, list[str]]:
    predictions = transcribe(
        model,
        processor,
        [row.image or b"" for row in rows],
        prompt,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        should_stop=should_stop,
    )
    return character_error_rate(predictions, [row.text for row in rows]), predictions


def _model_key(file_key: str, adapter_name: str) -> str:
    # PEFT files drop the adapter name ("lora_A.weight"); the live module holds "lora_A.<name>.weight".
    for part in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector"):
        marker = f".{part}"
        if marker in file_key:
            head, _, tail = file_key.partition(marker)
            return f"{head}{marker}.{adapter_name}{tail}" if tail else f"{head}{marker}.{adapter_name}"
    return file_key


def load_adapter_verified(base: Any, adapter_dir: Path, adapter_name: str = "default") -> Any:
    """``base`` wrapped with the adapter in ``adapter_dir``; raises unless every saved tensor loaded.

    Uses ``get_peft_model`` + ``load_state_dict`` rather than ``PeftModel.from_pretrained``,
    whose checkpoint-key conversion drops tensors silently on some families (docs/models.md).
    """
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file

    config = LoraConfig.from_pretrained(str(adapter_dir))
    config.inference_mode = True
    model = get_peft_model(base, config, adapter_name=adapter_name)
    saved = load_file(str(Path(adapter_dir) / ADAPTER_WEIGHTS_FILE))
    if not saved:
        raise AdapterReloadError(f"{adapter_dir / ADAPTER_WEIGHTS_FILE} holds no tensors")
    state = {_model_key(key, adapter_name): tensor for key, tensor in saved.items()}
    live = model.state_dict()
    unknown = sorted(k for k in state if k not in live)
    if unknown:
        raise AdapterReloadError(
            f"{len(unknown)} of {len(state)} adapter tensors match no module of the base model (e.g. {unknown[:3]})"
        )
    lora_params = {k for k in live if ".lora_" in k}
    not_loaded = sorted(lora_params - set(state))
    if not_loaded:
        raise AdapterReloadError(
            f"{len(not_loaded)} LoRA tensors of the model are not in the file (e.g. {not_loaded[:3]})"
        )
    for key, tensor in state.items():
        if live[key].shape != tensor.shape:
            raise AdapterReloadError(
                f"{key}: saved shape {tuple(tensor.shape)} != module shape {tuple(live[key].shape)}"
            )
    model.load_state_dict(state, strict=False)
    model.eval()
    return model
