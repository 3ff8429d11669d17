"""DeepSeek-OCR v1 (``DeepseekOCRForCausalLM``) served by vLLM: reduced language model, full-size towers, dummy weights.

Slow (one more engine, SAM + CLIP at 1024 px on the CPU): run with
``python -m pytest -m slow tests/deepseek/test_v1_serving.py`` (~3-5 min on 2 cores).
Checks that the family, the MoE + LoRA shim and the guard start an engine with LoRA on, and
that every resolution mode runs with the image-token count it should have.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

# Image tokens per mode for a 448x56 line (<= every tile size: no crops): (base/64) * (base/64 + 1) + 1.
EXPECTED_IMAGE_TOKENS = {"tiny": 8 * 9 + 1, "small": 10 * 11 + 1, "base": 16 * 17 + 1, "large": 20 * 21 + 1, "gundam": 16 * 17 + 1}


@pytest.fixture(scope="module")
def v1_engine():
    from vllm import LLM

    from ocrtune_devkit.deepseek import build_reduced_deepseek_ocr
    from ocrtune_inference.families import family_for

    checkpoint = build_reduced_deepseek_ocr().vllm
    family = family_for(checkpoint)
    assert family.name == "deepseek_ocr"
    llm = LLM(model=str(checkpoint), load_format="dummy", dtype="float32", enforce_eager=True, max_model_len=4096,
              enable_lora=True, max_lora_rank=16, limit_mm_per_prompt={"image": 1}, **family.engine_kwargs())
    yield llm, family
    llm.llm_engine.engine_core.shutdown()


@pytest.mark.parametrize("mode", list(EXPECTED_IMAGE_TOKENS))
def test_v1_resolution_modes(v1_engine, mode):
    from vllm import SamplingParams

    from ocrtune_devkit.synthetic import make_samples
    from ocrtune_shared.ocr import OCROptions

    llm, family = v1_engine
    image = make_samples(1, seed=3)[0].image()
    (out,) = llm.generate(family.prompt(image, OCROptions(resolution=mode)).as_vllm(),
                          SamplingParams(temperature=0.0, max_tokens=2))
    image_token = llm.get_tokenizer().convert_tokens_to_ids("<image>")
    assert out.prompt_token_ids.count(image_token) == EXPECTED_IMAGE_TOKENS[mode]
