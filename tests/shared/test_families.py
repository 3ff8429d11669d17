"""The family registry: one record per family, and training builds the prompt serving sends.

The trainer learns the text that follows its prompt; if the inference service sent another
prompt (a missing trailing space, another instruction), the adapter would be served out of
the distribution it learned. Each family's training code and serving code are asked for the
prompt of the same instruction, through their own code paths, and must agree.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from ocrtune_shared.adapters import AdapterManifest
from ocrtune_shared.families import FAMILY_NAMES, family_for_config, family_named
from ocrtune_shared.ocr import OCROptions, OCRTask

INSTRUCTIONS = ["Free OCR.", "Read the invoice number."]


def _rows():
    from ocrtune_devkit.synthetic import make_samples
    from ocrtune_trainer.datasets import DatasetRow

    return [DatasetRow(image=s.png, text=s.text, where=f"line {i}") for i, s in enumerate(make_samples(2, seed=1))]


@pytest.mark.parametrize("instruction", INSTRUCTIONS)
def test_qwen2_vl_trains_on_the_prompt_it_is_served_with(tiny_model_dir, instruction):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from ocrtune_inference.families import family_for
    from ocrtune_trainer.families import training_family_for

    served = family_for(tiny_model_dir).prompt(Image.new("RGB", (64, 32)), OCROptions(prompt=instruction)).text
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    training = training_family_for(model)
    inputs = training.sft_inputs(model, processor, _rows(), instruction, ["q_proj"])
    # What trl's vision-language collator renders for the prompt column of each row.
    trained = processor.apply_chat_template(inputs.train_dataset[0]["prompt"], add_generation_prompt=True, tokenize=False)
    assert trained == served
    assert training.generation_prompt(processor, instruction) == served  # the CER evaluation's


@pytest.mark.parametrize("instruction", INSTRUCTIONS)
def test_deepseek_ocr2_trains_on_the_prompt_it_is_served_with(tmp_path, instruction):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from ocrtune_devkit.deepseek import build_tiny_deepseek_ocr2
    from ocrtune_inference.families import family_for
    from ocrtune_trainer.families import training_family_for

    native = build_tiny_deepseek_ocr2()
    served_dir = tmp_path / "served"  # the original layout vLLM serves (config only: no weights needed)
    served_dir.mkdir()
    (served_dir / "config.json").write_text(json.dumps({"model_type": "deepseek_vl_v2",
                                                        "architectures": ["DeepseekOCR2ForCausalLM"]}))
    served = family_for(served_dir).prompt(Image.new("RGB", (64, 32)), OCROptions(prompt=instruction)).text
    processor = AutoProcessor.from_pretrained(native)
    model = AutoModelForImageTextToText.from_pretrained(native)
    training = training_family_for(model)
    inputs = training.sft_inputs(model, processor, _rows(), instruction, ["q_proj"])
    assert inputs.data_collator.prompt == served
    assert training.generation_prompt(processor, instruction) == served


def test_task_instructions_are_the_families_own():
    deepseek, qwen = family_named("deepseek_ocr2"), family_named("qwen2_vl")
    assert deepseek.prompt_text(deepseek.instruction()) == "<image>\nFree OCR."
    assert deepseek.instruction(OCRTask.markdown) == "<|grounding|>Convert the document to markdown."
    assert qwen.instruction(OCRTask.markdown, override="Only the total.") == "Only the total."
    with pytest.raises(ValueError, match="chat template"):
        qwen.prompt_text("Free OCR.")


@pytest.mark.parametrize(
    ("config", "name"),
    [
        ({"model_type": "qwen2_vl", "architectures": ["Qwen2VLForConditionalGeneration"]}, "qwen2_vl"),
        ({"model_type": "deepseek_vl_v2", "architectures": ["DeepseekOCRForCausalLM"]}, "deepseek_ocr"),
        ({"model_type": "deepseek_vl_v2", "architectures": ["DeepseekOCR2ForCausalLM"]}, "deepseek_ocr2"),
        ({"model_type": "deepseek_ocr2", "architectures": ["DeepseekOcr2ForConditionalGeneration"]}, "deepseek_ocr2"),
        ({"model_type": "deepseek_ocr2"}, "deepseek_ocr2"),
    ],
)
def test_checkpoints_find_their_family(config, name):
    assert family_for_config(config).name == name


def test_an_unknown_checkpoint_is_named_in_the_error():
    with pytest.raises(LookupError, match="llama.*known families: qwen2_vl"):
        family_for_config({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})


def test_manifest_names_a_known_family():
    manifest = {"name": "a", "version": 1, "base_model": "m", "rank": 8, "alpha": 8, "target_modules": ["q_proj"],
                "created_at": "2026-12-06T00:00:00Z"}
    for name in FAMILY_NAMES:
        assert AdapterManifest.model_validate({**manifest, "model_family": name}).model_family == name
    with pytest.raises(ValueError, match="model family 'llama'"):
        AdapterManifest.model_validate({**manifest, "model_family": "llama"})
