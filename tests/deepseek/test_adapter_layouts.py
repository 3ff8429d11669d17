"""Adapter conversion for vLLM's DeepSeek-OCR: names, fused-expert splitting, refusals.

The fused -> per-expert split is checked numerically against peft itself: for every
layer and expert, the converted factors give exactly peft's delta weight.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ocrtune_shared.adapter_layouts import (
    AdapterLayoutError,
    RawTensor,
    convert_adapter_folder,
    read_safetensors,
    to_vllm_deepseek,
    unservable_modules,
    write_safetensors,
)
from ocrtune_shared.adapters import ServingLayout


@pytest.fixture(scope="module")
def notebook_adapter(tiny_deepseek_ocr2, tmp_path_factory):
    from ocrtune_devkit.deepseek import make_random_adapter

    return make_random_adapter(tiny_deepseek_ocr2, tmp_path_factory.mktemp("nb") / "adapter", experts=True, seed=1)


def _per_expert_delta(tensors: dict[str, RawTensor], layer: int, expert: int, proj: str) -> torch.Tensor:
    base = f"base_model.model.model.layers.{layer}.mlp.experts.{expert}.{proj}"
    a = torch.from_numpy(tensors[f"{base}.lora_A.weight"].array.copy())
    b = torch.from_numpy(tensors[f"{base}.lora_B.weight"].array.copy())
    return b @ a


def test_fused_expert_lora_split_reproduces_peft_delta_exactly(tiny_deepseek_ocr2, notebook_adapter, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import DeepseekOcr2ForConditionalGeneration

    report = convert_adapter_folder(notebook_adapter, tmp_path / "vllm", base_model="deepseek-ai/DeepSeek-OCR-2")
    assert report.serving_layout is ServingLayout.vllm_deepseek_ocr
    assert report.routed_experts and report.split_expert_modules == ["model.layers.1.mlp.experts"]
    converted = read_safetensors(tmp_path / "vllm" / "adapter_model.safetensors")
    config = json.loads((tmp_path / "vllm" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "deepseek-ai/DeepSeek-OCR-2"
    assert "target_parameters" not in config
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert not any("language_model" in k or "base_layer" in k for k in converted)
    assert unservable_modules(list(converted)) == []

    # peft's own delta weights of the fused parameters, from the adapter as saved.
    model = DeepseekOcr2ForConditionalGeneration.from_pretrained(tiny_deepseek_ocr2, dtype=torch.float32)
    saved = json.loads((notebook_adapter / "adapter_config.json").read_text())
    peft_model = get_peft_model(
        model, LoraConfig(r=saved["r"], lora_alpha=saved["lora_alpha"], target_modules=saved["target_modules"],
                          target_parameters=saved["target_parameters"])
    )
    original = read_safetensors(notebook_adapter / "adapter_model.safetensors")
    state = {k.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight"):
             torch.from_numpy(v.array.copy()) for k, v in original.items()}
    result = peft_model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys

    experts = peft_model.base_model.model.model.language_model.layers[1].mlp.experts
    wrappers = {}
    module = experts
    while hasattr(module, "parameter_name"):
        wrappers[module.parameter_name] = module
        module = module.base_layer
    assert set(wrappers) == {"gate_up_proj", "down_proj"}
    gate_up = wrappers["gate_up_proj"].get_delta_weight("default")  # (E, 2I, H)
    down = wrappers["down_proj"].get_delta_weight("default")  # (E, H, I)
    inter = gate_up.shape[1] // 2
    scaling = saved["lora_alpha"] / saved["r"]
    for e in range(gate_up.shape[0]):
        torch.testing.assert_close(scaling * _per_expert_delta(converted, 1, e, "gate_proj"), gate_up[e, :inter], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(scaling * _per_expert_delta(converted, 1, e, "up_proj"), gate_up[e, inter:], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(scaling * _per_expert_delta(converted, 1, e, "down_proj"), down[e], rtol=1e-6, atol=1e-7)
    # Non-expert modules are renamed only, bit for bit.
    key = "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight"
    np.testing.assert_array_equal(converted[key.replace("language_model.", "")].array, original[key].array)


def test_experts_only_adapter_splits_by_the_shapes_of_its_two_fused_pairs(tiny_deepseek_ocr2, notebook_adapter, tmp_path):
    """No linear module tells the hidden size: gate_up and down are told apart by how their shapes fit."""
    from ocrtune_devkit.deepseek import make_random_adapter

    experts_only = make_random_adapter(tiny_deepseek_ocr2, tmp_path / "ex", experts=True, linear=False, seed=1)
    report = convert_adapter_folder(experts_only, tmp_path / "vllm")
    assert report.routed_experts and set(report.target_modules) == {"gate_proj", "up_proj", "down_proj"}
    # The same per-expert tensors, shape for shape, as the notebook adapter (linear modules + experts) gives.
    convert_adapter_folder(notebook_adapter, tmp_path / "nb")
    alone, full = (read_safetensors(tmp_path / d / "adapter_model.safetensors") for d in ("vllm", "nb"))
    assert alone and all(".mlp.experts." in k for k in alone)
    for key, tensor in alone.items():
        assert tensor.array.shape == full[key].array.shape


def test_bf16_adapters_convert_without_touching_values(tmp_path):
    rng = np.random.default_rng(0)
    words = rng.integers(0, 2**16, size=(8, 32), dtype=np.uint16)
    tensors = {
        "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight": RawTensor("BF16", words),
        "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_B.weight": RawTensor("BF16", words.T.copy()),
    }
    write_safetensors(tmp_path / "a.safetensors", tensors)
    out, _, report = to_vllm_deepseek(read_safetensors(tmp_path / "a.safetensors"), {"r": 8, "lora_alpha": 8})
    assert report.renamed == 2 and not report.routed_experts
    got = out["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
    assert got.dtype == "BF16" and np.array_equal(got.array, words)


def test_native_names_are_flagged_as_unservable():
    native = "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight"
    assert unservable_modules([native]) == ["model.language_model.layers.0.self_attn.q_proj"]
    assert unservable_modules([native.replace("language_model.", "")]) == []


@pytest.mark.parametrize(
    ("module", "words"),
    [
        ("model.vision_tower.vision_encoder.layers.0.self_attn.q_proj", "vision towers"),
        ("model.sam_model.blocks.0.attn.qkv", "vision towers"),
        ("model.multi_modal_projector", "vision towers"),
        ("model.language_model.embed_tokens", "not on"),
        ("lm_head", "not on"),
        ("model.language_model.layers.1.mlp.gate", "not on"),
    ],
)
def test_refuses_what_vllm_cannot_serve_naming_the_module(module, words):
    tensors = {
        f"base_model.model.{module}.lora_A.weight": RawTensor("F32", np.zeros((4, 8), np.float32)),
        f"base_model.model.{module}.lora_B.weight": RawTensor("F32", np.zeros((8, 4), np.float32)),
    }
    with pytest.raises(AdapterLayoutError) as err:
        to_vllm_deepseek(tensors, {"r": 4, "lora_alpha": 4})
    assert words in str(err.value)
    assert err.value.modules == [module.replace("model.language_model.", "model.")]


def test_notebook_adapter_imports_into_the_store_with_its_layout(notebook_adapter, tmp_path):
    from ocrtune_shared.adapter_import import main
    from ocrtune_shared.store import AdapterStore

    config = json.loads((notebook_adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "./deepseek_ocr"  # what the notebook records
    (notebook_adapter / "adapter_config.json").write_text(json.dumps(config))
    main([str(notebook_adapter), "--store", str(tmp_path), "--name", "nb-import", "--base-model",
          "deepseek-ai/DeepSeek-OCR-2", "--family", "deepseek_ocr2"])
    store = AdapterStore(tmp_path)
    stored = store.resolve("nb-import")
    manifest = store.verify(stored)
    assert manifest.serving_layout is ServingLayout.vllm_deepseek_ocr
    assert manifest.base_model == "deepseek-ai/DeepSeek-OCR-2" and manifest.rank == 16
    assert "gate_proj" in manifest.target_modules
    served = json.loads((stored.path / "adapter_config.json").read_text())
    assert served["base_model_name_or_path"] == "deepseek-ai/DeepSeek-OCR-2"
    assert unservable_modules(list(read_safetensors(stored.path / "adapter_model.safetensors"))) == []


def test_import_refuses_vision_lora_and_publishes_nothing(tmp_path):
    from ocrtune_shared.adapter_import import import_peft_adapter
    from ocrtune_shared.store import AdapterStore

    source = tmp_path / "src"
    source.mkdir()
    module = "base_model.model.model.vision_tower.vision_encoder.layers.0.self_attn.q_proj"
    write_safetensors(source / "adapter_model.safetensors", {
        f"{module}.lora_A.weight": RawTensor("F32", np.zeros((4, 8), np.float32)),
        f"{module}.lora_B.weight": RawTensor("F32", np.zeros((8, 4), np.float32)),
    })
    (source / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 4, "target_modules": ["q_proj"]}))
    store = AdapterStore(tmp_path / "store")
    with pytest.raises(AdapterLayoutError, match="vision_tower"):
        import_peft_adapter(store, source, name="bad", base_model="deepseek-ai/DeepSeek-OCR-2", model_family="deepseek_ocr2")
    assert store.versions("bad") == []
