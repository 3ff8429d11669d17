"""vLLM on the CPU: MoE models (DeepSeek-OCR v1/v2) with LoRA enabled. The one place for this shim.

With ``enable_lora=True`` vLLM 0.32 marks every ``FusedMoE`` layer ``is_lora_enabled``
(``vllm/model_executor/layers/fused_moe/layer.py``) and the unquantized MoE oracle then
picks its Triton LoRA backend (``fused_moe/oracle/unquantized.py``). There is no Triton
on the CPU: the first forward fails with ``module 'triton.language' has no attribute
'bfloat16'``. Upstream routes every LoRA-enabled unquantized MoE to Triton on purpose
(vllm-project/vllm#40273, "Fix MoE backend selection for LoRA": "LoRA currently only supports
Triton-based backends"; its review asked about CPU and left it) and has no CPU fused-MoE LoRA
kernel (vLLM's CPU LoRA runs through ``punica_cpu`` for linear layers only).

The shim, CPU platform only:

1. ``apply()`` (called from the service's vLLM general plugin, so it runs in the engine
   core and worker processes too) forces ``FusedMoEConfig.is_lora_enabled`` off, so the
   MoE layers keep vLLM's CPU MoE kernel.
2. ``engine_kwargs()`` limits LoRA to ``qkv_proj``, ``o_proj``, ``gate_up_proj`` and
   ``down_proj`` (attention, dense MLP, shared experts): an adapter with routed-expert LoRA
   is then refused at load by vLLM, instead of being served without its expert deltas.

Consequence: routed-expert LoRA is served on a GPU only. Remove this module once vLLM has
a CPU fused-MoE LoRA path.
"""

from __future__ import annotations

import functools
from typing import Any

CPU_LORA_TARGET_MODULES = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
_PATCHED_FLAG = "_ocrtune_cpu_moe_lora_off"


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def apply() -> None:
    """Force MoE layers' LoRA flag off on the CPU platform; idempotent, a no-op elsewhere."""
    if not _on_cpu():
        return
    from vllm.model_executor.layers.fused_moe.config import FusedMoEConfig

    original = FusedMoEConfig.__post_init__
    if getattr(original, _PATCHED_FLAG, False):
        return

    @functools.wraps(original)
    def __post_init__(self: Any) -> None:
        self.is_lora_enabled = False
        original(self)

    setattr(__post_init__, _PATCHED_FLAG, True)
    FusedMoEConfig.__post_init__ = __post_init__


def is_applied() -> bool:
    from vllm.model_executor.layers.fused_moe.config import FusedMoEConfig

    return bool(getattr(FusedMoEConfig.__post_init__, _PATCHED_FLAG, False))


def engine_kwargs() -> dict[str, Any]:
    """``AsyncEngineArgs`` for an MoE model with LoRA on this platform (empty off the CPU)."""
    if not _on_cpu():
        return {}
    return {"lora_target_modules": list(CPU_LORA_TARGET_MODULES)}
