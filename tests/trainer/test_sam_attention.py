"""SAM attention with the relative-position bias folded into q and k (``families.sam_attention``).

transformers' DeepSeek-OCR-2 SAM attention materialises its decomposed relative-position bias as
an (images, heads, N, N) tensor (0.4 GB a 1024 px view at full size in bf16). The first test shows
that upstream behaviour (if it fails, upstream changed and the workaround may go); the others, that
the folded forward gives the same outputs and gradients without any tensor of that size.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ocrtune_trainer.families.sam_attention import fold_relative_position_bias, folded_forward


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operator returns."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


def _attention(implementation: str, grid: int, window: int = 0):
    """One SAM attention module of DeepSeek-OCR-2 (2 heads of 32) for a ``grid`` x ``grid`` patch map."""
    from transformers.models.deepseek_ocr2 import modeling_deepseek_ocr2 as m

    config = m.DeepseekOcr2SamVisionConfig(hidden_size=64, num_attention_heads=2, image_size=grid * 16,
                                          patch_size=16, use_rel_pos=True)
    config._attn_implementation = implementation
    torch.manual_seed(0)
    module = m.DEEPSEEK_OCR2_SAM_VISION_ATTENTION_CLASSES[implementation](config, window)
    with torch.no_grad():  # transformers initialises the tables at zero: no bias would be no test
        module.rel_pos_h.normal_(std=0.5)
        module.rel_pos_w.normal_(std=0.5)
    return module


def test_upstream_sam_attention_materialises_an_n_by_n_bias():
    module, grid = _attention("sdpa", 32), 32
    hidden = torch.randn(1, grid, grid, 64)
    with torch.no_grad(), LargestTensor() as seen:
        module(hidden)
    assert seen.numel >= 2 * (grid * grid) ** 2  # (images, heads, N, N)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize(("grid", "window", "batch"), [(32, 0, 2), (14, 14, 3), (24, 0, 1)])
def test_folded_forward_equals_transformers(implementation, grid, window, batch):
    """Global layers (the full grid), windowed ones (14 x 14) and a grid of another size (tiles)."""
    module = _attention(implementation, grid if window == 0 else window, window)
    hidden = torch.randn(batch, grid, grid, 64, dtype=torch.float64)
    module = module.double()
    expected, _ = module(hidden)
    with LargestTensor() as seen:
        got, weights = folded_forward(module, hidden)
    assert weights is None
    # float64, but the eager class takes its softmax in float32: differences of ~1e-7.
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    if window == 0:  # (windows of 196 patches are small either way)
        assert seen.numel < batch * 2 * (grid * grid) ** 2 / 4  # nothing near (images, heads, N, N)


def test_gradients_flow_as_in_transformers():
    module = _attention("sdpa", 16).double()
    hidden = torch.randn(2, 16, 16, 64, dtype=torch.float64, requires_grad=True)
    module(hidden)[0].square().sum().backward()
    expected = [hidden.grad.clone(), module.rel_pos_h.grad.clone(), module.qkv.weight.grad.clone()]
    hidden.grad = None
    module.zero_grad()
    folded_forward(module, hidden)[0].square().sum().backward()
    for got, want in zip([hidden.grad, module.rel_pos_h.grad, module.qkv.weight.grad], expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-9)


def test_fold_patches_every_sam_attention_of_the_tiny_model_and_keeps_its_features():
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from ocrtune_devkit.deepseek import build_tiny_deepseek_ocr2
    from ocrtune_devkit.synthetic import make_samples

    folder = build_tiny_deepseek_ocr2()
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    image = make_samples(1, seed=3)[0].image()
    pixels = AutoProcessor.from_pretrained(folder)(images=image, text="<image>\nFree OCR.", return_tensors="pt")
    with torch.no_grad():
        for module in model.modules():  # random tables, so that the bias matters
            if hasattr(module, "rel_pos_h"):
                module.rel_pos_h.normal_(std=0.5)
                module.rel_pos_w.normal_(std=0.5)
        core = model.model
        before = core.get_image_features(pixel_values=pixels["pixel_values"],
                                         num_local_patches=pixels["num_local_patches"]).pooler_output
        sam_layers = sum(hasattr(m, "rel_pos_h") for m in model.modules())
        assert fold_relative_position_bias(model) == sam_layers > 0
        after = core.get_image_features(pixel_values=pixels["pixel_values"],
                                        num_local_patches=pixels["num_local_patches"]).pooler_output
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_the_trainer_loads_deepseek_ocr2_with_folded_sam_attention():
    """``load_base`` (what jobs, evaluation and DDP ranks load) folds every SAM attention."""
    from ocrtune_devkit.deepseek import build_tiny_deepseek_ocr2
    from ocrtune_trainer.training import Runtime, load_base

    model, _ = load_base(str(build_tiny_deepseek_ocr2()), Runtime(torch.device("cpu"), torch.float32, False, False))
    sam = [m for m in model.modules() if hasattr(m, "rel_pos_h")]
    assert sam and all(m.forward.__func__ is folded_forward for m in sam)
