"""DeepSeek-OCR-2 through the trainer's own training path (trl SFTTrainer), on the tiny native checkpoint.

Checks: LoRA only on the language model (vision encoder's Qwen2 layers untouched), routed
experts through target_parameters only when asked, prompt masked, the saved adapter
reloads (get_peft_model + load_state_dict, the peft reload trap) and changes the output,
and the trainer's transcription uses DeepSeek's prompt.
"""

from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(scope="module")
def rows():
    from ocrtune_devkit.synthetic import make_samples
    from ocrtune_trainer.datasets import DatasetRow

    return [DatasetRow(image=s.png, text=s.text, where=f"row {i}") for i, s in enumerate(make_samples(4, seed=21))]


def _train(tiny_deepseek_ocr2, rows, tmp_path, targets):
    from transformers import AutoProcessor, DeepseekOcr2ForConditionalGeneration

    from ocrtune_shared.finetune import FinetuneRequest
    from ocrtune_trainer.settings import TrainerSettings
    from ocrtune_trainer.training import pick_runtime, train_adapter

    settings = TrainerSettings(device="cpu", data_dir=tmp_path / "data", adapter_store=tmp_path / "store")
    runtime = pick_runtime(settings)
    processor = AutoProcessor.from_pretrained(tiny_deepseek_ocr2)
    model = DeepseekOcr2ForConditionalGeneration.from_pretrained(tiny_deepseek_ocr2, dtype=torch.float32)
    request = FinetuneRequest(
        adapter_name="ds-test",
        train={"uri": "file:///unused.parquet"},
        hyperparameters={"max_steps": 2, "warmup_steps": 0, "learning_rate": 2e-2, "per_device_batch_size": 2,
                         "gradient_accumulation_steps": 1, "target_modules": targets, "optimizer": "adamw_torch"},
    )
    outcome = train_adapter(request, model, processor, rows, tmp_path / "work", runtime, settings,
                            lambda progress, loss: None, lambda: None)
    return outcome, processor


@pytest.mark.parametrize("experts", [False, True], ids=["attention+mlp", "with-experts"])
def test_trainer_trains_deepseek_ocr2_language_model_only(tiny_deepseek_ocr2, rows, tmp_path, experts):
    from ocrtune_shared.adapter_layouts import read_safetensors

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] + (["experts"] if experts else [])
    outcome, _ = _train(tiny_deepseek_ocr2, rows, tmp_path, targets)
    assert [p.step for p in outcome.loss_curve] == [1, 2]
    names = list(read_safetensors(outcome.adapter_dir / "adapter_model.safetensors"))
    assert names and all(".language_model.layers." in n for n in names)
    assert any("shared_experts" in n for n in names) and any("layers.0.mlp.gate_proj" in n for n in names)
    assert any(n.endswith("mlp.experts.lora_A.weight") for n in names) is experts
    config = json.loads((outcome.adapter_dir / "adapter_config.json").read_text())
    assert (config.get("target_parameters") or None) == (["mlp.experts.gate_up_proj", "mlp.experts.down_proj"] if experts else None)


def test_reloaded_adapter_changes_the_output_and_transcribes(tiny_deepseek_ocr2, rows, tmp_path):
    from transformers import DeepseekOcr2ForConditionalGeneration

    from ocrtune_trainer.evaluation import load_adapter_verified, transcribe

    outcome, processor = _train(tiny_deepseek_ocr2, rows, tmp_path, ["q_proj", "v_proj", "o_proj", "down_proj"])
    base = DeepseekOcr2ForConditionalGeneration.from_pretrained(tiny_deepseek_ocr2, dtype=torch.float32).eval()
    inputs = processor(images=_image(rows[0].image), text="<image>\nFree OCR.", return_tensors="pt")
    with torch.no_grad():
        before = base(**inputs).logits[0, -1].clone()
    tuned = load_adapter_verified(base, outcome.adapter_dir)
    with torch.no_grad():
        after = tuned(**inputs).logits[0, -1]
    assert (after - before).abs().max() > 1e-3  # the trap: a silently dropped adapter gives identical logits
    texts = transcribe(tuned, processor, [rows[0].image], "Free OCR.", max_new_tokens=4)
    assert len(texts) == 1 and isinstance(texts[0], str)


def _image(data: bytes):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


def test_submit_time_target_check_names_what_is_not_servable(tiny_deepseek_ocr2):
    from transformers import AutoConfig, AutoModelForImageTextToText

    from ocrtune_trainer.datasets import DatasetError
    from ocrtune_trainer.families import training_family_for

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(tiny_deepseek_ocr2))
    check_targets = training_family_for(model).check_targets
    check_targets(model, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "experts"])
    with pytest.raises(DatasetError, match="qkv"):  # a SAM layer name: vision towers take no LoRA in vLLM
        check_targets(model, ["q_proj", "qkv"])
    with pytest.raises(DatasetError, match="besides 'experts'"):
        check_targets(model, ["experts"])


def test_a_steps_samples_run_as_one_micro_batch_with_the_same_loss(tiny_deepseek_ocr2, rows, tmp_path, monkeypatch):
    """max_micro_batch regroups 1 x 4 into 4 x 1: one collator call a step, the same step loss."""
    from transformers import AutoProcessor, DeepseekOcr2ForConditionalGeneration

    from ocrtune_shared.finetune import FinetuneRequest
    from ocrtune_trainer.families import deepseek_ocr
    from ocrtune_trainer.settings import TrainerSettings
    from ocrtune_trainer.training import pick_runtime, train_adapter

    sizes: list[int] = []
    training = deepseek_ocr.DeepseekOcr2Training
    original = training.sft_inputs

    def recording(self, *args, **kwargs):
        inputs = original(self, *args, **kwargs)
        collate = inputs.data_collator

        class Recording(type(collate)):
            def __call__(self, batch_rows):
                sizes.append(len(batch_rows))
                return super().__call__(batch_rows)

        inputs.data_collator = Recording.__new__(Recording)
        inputs.data_collator.__dict__.update(collate.__dict__)
        return inputs

    monkeypatch.setattr(training, "sft_inputs", recording)
    losses = {}
    for cap in (1, 4):
        sizes.clear()
        settings = TrainerSettings(device="cpu", data_dir=tmp_path / "data", adapter_store=tmp_path / "store",
                                   max_micro_batch=cap)
        processor = AutoProcessor.from_pretrained(tiny_deepseek_ocr2)
        model = DeepseekOcr2ForConditionalGeneration.from_pretrained(tiny_deepseek_ocr2, dtype=torch.float32)
        request = FinetuneRequest(
            adapter_name="ds-merge", train={"uri": "file:///unused.parquet"},
            hyperparameters={"max_steps": 1, "warmup_steps": 0, "learning_rate": 2e-2, "per_device_batch_size": 1,
                             "gradient_accumulation_steps": 4, "target_modules": ["q_proj", "v_proj"],
                             "optimizer": "adamw_torch"},
        )
        outcome = train_adapter(request, model, processor, rows, tmp_path / f"work-{cap}", pick_runtime(settings),
                                settings, lambda progress, loss: None, lambda: None)
        assert sizes == ([1, 1, 1, 1] if cap == 1 else [4])
        losses[cap] = outcome.loss_curve[0].loss
    assert losses[4] == pytest.approx(losses[1], rel=1e-4)
