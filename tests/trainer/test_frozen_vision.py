"""Frozen vision towers stay out of autograd under gradient checkpointing (``ocrtune_trainer.frozen_vision``).

transformers 5's ``enable_input_require_grads`` (which trl calls with gradient checkpointing)
hooks the vision encoders' embeddings too, so their outputs require grad and the frozen tower
is recorded, recomputed and back-propagated through. The first test shows that upstream
behaviour (if it fails, upstream changed and the workaround may go); the second, that with the
workaround the image features carry no graph and the LoRA gradients are unchanged.
"""

from __future__ import annotations

import pytest
import torch

from ocrtune_trainer.frozen_vision import image_features_without_autograd, is_vision_module


def _tiny(family: str):
    """A LoRA-wrapped tiny model of ``family`` in train mode, and one collated batch of two lines."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from ocrtune_devkit.synthetic import make_samples
    from ocrtune_trainer.families import deepseek_ocr

    rows = [{"image": s.image(), "text": s.text} for s in make_samples(2, seed=5)]
    if family == "deepseek_ocr2":
        from ocrtune_devkit.deepseek import build_tiny_deepseek_ocr2

        folder = build_tiny_deepseek_ocr2()
        processor = AutoProcessor.from_pretrained(folder)
        batch = deepseek_ocr.DeepseekOcr2Collator(processor, "<image>\nFree OCR.")(rows)
        targets, _ = deepseek_ocr.lora_targets(["q_proj", "v_proj"])
    else:
        from ocrtune_devkit.tiny_models import build_tiny_qwen2_vl

        folder = build_tiny_qwen2_vl()
        processor = AutoProcessor.from_pretrained(folder)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Free OCR."}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        batch = dict(processor(images=[r["image"] for r in rows], text=[prompt + r["text"] for r in rows],
                               return_tensors="pt", padding=True))
        batch["labels"] = batch["input_ids"].clone()
        targets = r".*language_model.*\.(q_proj|v_proj)$"
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False))
    assert not any(p.requires_grad for n, p in model.named_parameters() if is_vision_module(n))
    # What trl's SFTTrainer does with gradient_checkpointing=True and a peft model.
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model.train()
    return model, batch


def _features_require_grad(model, batch) -> tuple[bool, dict[str, torch.Tensor]]:
    """Whether the image features came out of the vision side with a graph; and the LoRA gradients."""
    core = model.get_base_model().model
    seen = []
    extract = core.get_image_features

    def recording(*args, **kwargs):
        out = extract(*args, **kwargs)
        tensors = out if isinstance(out, (tuple, list)) else [getattr(out, "pooler_output", out)]
        flat = [t for x in tensors for t in (x if isinstance(x, (tuple, list)) else [x]) if torch.is_tensor(t)]
        seen.append(any(t.requires_grad for t in flat))
        return out

    core.get_image_features = recording
    model(**batch).loss.backward()
    core.get_image_features = extract
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    assert seen, "the model never asked for image features"
    return any(seen), grads


@pytest.mark.parametrize("family", ["qwen2_vl", "deepseek_ocr2"])
def test_upstream_hooks_put_the_frozen_tower_under_autograd(family):
    model, batch = _tiny(family)
    requires_grad, _ = _features_require_grad(model, batch)
    assert requires_grad


@pytest.mark.parametrize("family", ["qwen2_vl", "deepseek_ocr2"])
def test_image_features_without_autograd_same_lora_gradients(family):
    model, batch = _tiny(family)
    _, before = _features_require_grad(model, batch)
    assert image_features_without_autograd(model)
    requires_grad, after = _features_require_grad(model, batch)
    assert not requires_grad
    assert before.keys() == after.keys() and before
    for name, grad in before.items():
        torch.testing.assert_close(after[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_a_vision_parameter_made_trainable_gets_its_gradient():
    """Checked at every call: installed at load time, the wrapper never hides a trainable tower."""
    model, batch = _tiny("qwen2_vl")
    assert image_features_without_autograd(model)
    weight = next(p for n, p in model.named_parameters() if is_vision_module(n) and p.dim() > 1)
    weight.requires_grad_(True)
    requires_grad, grads = _features_require_grad(model, batch)
    assert requires_grad and weight.grad is None  # _features_require_grad cleared it after reading
    assert any(is_vision_module(n) for n in grads)
