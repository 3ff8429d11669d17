"""Frozen vision towers run without autograd while a LoRA trains the language model.

Upstream behaviour this works around: with gradient checkpointing, trl (and peft) call
``enable_input_require_grads()``, which since transformers 5 (huggingface/transformers#41993)
hooks the input embeddings of EVERY nested model, the vision encoders' patch embeddings
included. Their outputs then require grad, so a vision tower with no trainable parameter
is recorded by autograd, recomputed by checkpointing and back-propagated through for
nothing: on the tiny DeepSeek-OCR-2 a checkpointed step took 3.9x as long as an
unchecked one. ms-swift hit the same and fixed it the same way (modelscope/ms-swift#10214).

Our LoRA targets never include a vision tower or projector (vLLM serves none there), so
image features are computed under ``torch.no_grad`` whenever every vision parameter is frozen.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

VISION_PARTS = ("visual", "vision", "sam_model", "qwen2_model", "projector")
"""Module-name parts of the vision side of the families we train (Qwen2-VL, DeepSeek-OCR-2)."""


def is_vision_module(name: str) -> bool:
    return any(part in name for part in VISION_PARTS)


def image_features_without_autograd(model: Any) -> bool:
    """Make ``model``'s image-feature extraction run without autograd while its vision side is frozen.

    ``model`` is a transformers vision-language model, optionally inside a peft wrapper. Checked
    at every call (a vision parameter made trainable later gets its gradients), so it can be
    installed when the model is loaded. False when the model has no ``get_image_features``.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    core = getattr(base, "model", None)
    extract = getattr(core, "get_image_features", None)
    if extract is None:
        return False
    vision = [p for n, p in base.named_parameters() if is_vision_module(n)]

    @functools.wraps(extract)
    def without_autograd(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled() or any(p.requires_grad for p in vision):
            return extract(*args, **kwargs)
        with torch.no_grad():
            return extract(*args, **kwargs)

    core.get_image_features = without_autograd
    return True
