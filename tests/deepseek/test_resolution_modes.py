"""Per-request resolution modes: vLLM's placeholder count must equal the image tokens the processor emits.

Unpatched, vLLM 0.32 counts with its module constants and the engine dies on the first
``tiny`` request ("Attempted to assign 73 = 73 multimodal tokens to 273 placeholders").
"""

from __future__ import annotations

import pytest
from PIL import Image

pytest.importorskip("vllm")

from ocrtune_inference.families.deepseek_ocr import V1_MODES, V2_MODES  # noqa: E402

SIZES = [(448, 56), (640, 640), (641, 300), (1400, 175), (900, 1800), (2000, 2000)]


def _processor(tokenizer_dir, strategy: str, **kwargs):
    from transformers import AutoTokenizer
    from vllm.transformers_utils.processors.deepseek_ocr import DeepseekOCRProcessor

    defaults = {"v1": {"image_size": 640, "base_size": 1024}, "v2": {"image_size": 768, "base_size": 1024}}[strategy]
    settings = {**defaults, **{k: v for k, v in kwargs.items() if k != "crop_mode"}}
    return DeepseekOCRProcessor(tokenizer=AutoTokenizer.from_pretrained(tokenizer_dir), strategy=strategy, **settings)


@pytest.fixture(scope="module")
def tokenizer_dir():
    from ocrtune_devkit.deepseek import build_reduced_deepseek_ocr

    return build_reduced_deepseek_ocr().vllm


@pytest.mark.parametrize("strategy", ["v1", "v2"])
def test_counted_placeholders_equal_emitted_image_tokens(tokenizer_dir, strategy):
    from ocrtune_inference.vllm_deepseek_modes import image_token_count

    modes = V1_MODES if strategy == "v1" else V2_MODES
    for mode, kwargs in modes.items():
        processor = _processor(tokenizer_dir, strategy, **kwargs)
        cropping = kwargs["crop_mode"]
        for width, height in SIZES:
            out = processor(prompt="<image>\nFree OCR.", images=[Image.new("RGB", (width, height))], crop_mode=cropping)
            emitted = int(out["num_image_tokens"][0])
            assert image_token_count(width, height, processor, cropping) == emitted, (mode, width, height)


def test_patch_reaches_both_vllm_processors():
    from vllm.model_executor.models.deepseek_ocr import DeepseekOCRMultiModalProcessor
    from vllm.model_executor.models.deepseek_ocr2 import DeepseekOCR2MultiModalProcessor

    from ocrtune_inference import vllm_deepseek_modes

    vllm_deepseek_modes.apply()
    assert vllm_deepseek_modes.is_applied()
    assert DeepseekOCRMultiModalProcessor._get_prompt_updates is DeepseekOCR2MultiModalProcessor._get_prompt_updates
