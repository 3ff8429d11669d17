"""The DeepSeek-OCR serving family: selection from config.json, prompts, resolution modes, guard wiring."""

from __future__ import annotations

import json

import pytest

from ocrtune_shared.ocr import OCROptions, OCRTask, ResolutionMode


@pytest.fixture()
def v1_dir(tmp_path):
    tmp_path = tmp_path / "v1"
    tmp_path.mkdir()
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "deepseek_vl_v2", "architectures": ["DeepseekOCRForCausalLM"]}))
    return tmp_path


@pytest.fixture()
def v2_dir(tmp_path):
    tmp_path = tmp_path / "v2"
    tmp_path.mkdir()
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "deepseek_vl_v2", "architectures": ["DeepseekOCR2ForCausalLM"]}))
    return tmp_path


def test_family_is_picked_from_the_original_layout_config(v1_dir, v2_dir):
    from ocrtune_inference.families import family_for

    assert family_for(v1_dir).name == "deepseek_ocr"
    assert family_for(v2_dir).name == "deepseek_ocr2"


def test_prompts_are_deepseeks_own(v2_dir):
    from PIL import Image

    from ocrtune_inference.families import family_for

    family = family_for(v2_dir)
    image = Image.new("RGB", (64, 32), "white")
    assert family.prompt(image, OCROptions()).text == "<image>\nFree OCR."
    assert family.prompt(image, OCROptions(task=OCRTask.markdown)).text == "<image>\n<|grounding|>Convert the document to markdown."
    assert family.prompt(image, OCROptions(prompt="Read the table.")).text == "<image>\nRead the table."


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (ResolutionMode.tiny, {"base_size": 512, "image_size": 512, "crop_mode": False}),
        (ResolutionMode.small, {"base_size": 640, "image_size": 640, "crop_mode": False}),
        (ResolutionMode.base, {"base_size": 1024, "image_size": 1024, "crop_mode": False}),
        (ResolutionMode.large, {"base_size": 1280, "image_size": 1280, "crop_mode": False}),
        (ResolutionMode.gundam, {"base_size": 1024, "image_size": 640, "crop_mode": True}),
        (ResolutionMode.auto, {"base_size": 1024, "image_size": 640, "crop_mode": True}),
    ],
)
def test_v1_resolution_modes_per_request(v1_dir, mode, expected):
    from PIL import Image

    from ocrtune_inference.families import family_for

    prompt = family_for(v1_dir).prompt(Image.new("RGB", (64, 32)), OCROptions(resolution=mode))
    assert prompt.mm_processor_kwargs == expected
    assert prompt.as_vllm()["mm_processor_kwargs"] == expected


def test_v2_has_tiling_or_global_view_only(v2_dir):
    from PIL import Image

    from ocrtune_inference.families import family_for
    from ocrtune_inference.families.deepseek_ocr import UnsupportedResolution

    family = family_for(v2_dir)
    image = Image.new("RGB", (64, 32))
    assert family.prompt(image, OCROptions()).mm_processor_kwargs == {"crop_mode": True}
    assert family.prompt(image, OCROptions(resolution="base")).mm_processor_kwargs == {"crop_mode": False}
    with pytest.raises(UnsupportedResolution, match="tiny"):
        family.prompt(image, OCROptions(resolution="tiny"))


def test_engine_gets_the_repetition_guard_by_default(v2_dir):
    from ocrtune_inference.families import family_for

    kwargs = family_for(v2_dir).engine_kwargs()
    assert kwargs["logits_processors"] == ["ocrtune_inference.families.deepseek_ocr:DeepseekNoRepeatNGram"]


def test_guard_is_on_unless_the_request_opts_out():
    pytest.importorskip("vllm")
    from vllm import SamplingParams

    from ocrtune_inference.families.deepseek_ocr import NGRAM_SIZE, NGRAM_WINDOW, DeepseekNoRepeatNGram

    guard = DeepseekNoRepeatNGram.__new__(DeepseekNoRepeatNGram)
    guard._whitelist = {7}
    default = guard.new_req_logits_processor(SamplingParams())
    assert (default.ngram_size, default.window_size, default.whitelist_token_ids) == (NGRAM_SIZE, NGRAM_WINDOW, {7})
    assert guard.new_req_logits_processor(SamplingParams(extra_args={"ngram_guard": False})) is None
