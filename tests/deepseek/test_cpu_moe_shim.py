"""The vLLM-CPU MoE + LoRA shim (``ocrtune_inference.vllm_cpu_moe``).

Without it, a LoRA-enabled engine picks the Triton fused-MoE LoRA backend for every MoE
layer, and the first forward of DeepSeek-OCR fails on the CPU (no Triton there). The
end-to-end proof is ``test_vllm_parity.py`` (its engine cannot start without the shim);
this test pins the mechanism in-process, in a second.
"""

from __future__ import annotations

import pytest

pytest.importorskip("vllm")


def _lora_moe_config():
    import torch
    from vllm.model_executor.layers.fused_moe.activation import MoEActivation
    from vllm.model_executor.layers.fused_moe.config import (
        FusedMoEConfig,
        FusedMoEParallelConfig,
        RoutingMethodType,
    )

    return FusedMoEConfig(
        num_experts=4, experts_per_token=2, hidden_dim=128, intermediate_size=64, num_local_experts=4,
        num_logical_experts=4, activation=MoEActivation.SILU, device="cpu",
        routing_method=RoutingMethodType.Default, moe_parallel_config=FusedMoEParallelConfig.make_no_parallel(),
        in_dtype=torch.float32, is_lora_enabled=True,
    )


def test_shim_keeps_moe_layers_off_the_triton_lora_backend(monkeypatch):
    from vllm.model_executor.layers.fused_moe.config import FusedMoEConfig
    from vllm.model_executor.layers.fused_moe.oracle.unquantized import (
        UnquantizedMoeBackend,
        select_unquantized_moe_backend,
    )

    from ocrtune_inference import vllm_cpu_moe

    _unpatched(monkeypatch, FusedMoEConfig)
    backend, _ = select_unquantized_moe_backend(_lora_moe_config())
    assert backend is UnquantizedMoeBackend.TRITON  # what vLLM does unshimmed: no Triton on the CPU

    vllm_cpu_moe.apply()
    vllm_cpu_moe.apply()  # idempotent
    assert vllm_cpu_moe.is_applied()
    config = _lora_moe_config()
    assert config.is_lora_enabled is False
    backend, _ = select_unquantized_moe_backend(config)
    assert backend is not UnquantizedMoeBackend.TRITON


def test_shim_limits_cpu_lora_to_modules_vllm_cpu_can_run():
    from ocrtune_inference import vllm_cpu_moe

    assert vllm_cpu_moe.engine_kwargs() == {"lora_target_modules": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]}


def test_plugin_entry_point_applies_the_shim(monkeypatch):
    from vllm.model_executor.layers.fused_moe.config import FusedMoEConfig

    from ocrtune_inference import vllm_cpu_moe, vllm_plugins

    _unpatched(monkeypatch, FusedMoEConfig)
    assert not vllm_cpu_moe.is_applied()
    vllm_plugins.apply()
    assert vllm_cpu_moe.is_applied()


def _unpatched(monkeypatch, config_class) -> None:
    """vLLM loads our plugin in this process too once an engine started here: undo it for the test's span."""
    original = getattr(config_class.__post_init__, "__wrapped__", config_class.__post_init__)
    monkeypatch.setattr(config_class, "__post_init__", original)
