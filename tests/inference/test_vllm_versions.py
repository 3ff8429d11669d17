"""The one place where vLLM versions differ for us: which part of a model's weight mapper names LoRA modules.

vLLM >= 0.30 (the CPU build here) applies only the renames (``WeightsMapper.get_rename_mapper``);
vLLM 0.26 (proven on the H200, docs/gpu-machine.md) has no such method and applies the whole mapper
through ``_map_name``. Calling ``get_rename_mapper`` unconditionally stopped the service there.
"""

from __future__ import annotations

from vllm.model_executor.models.utils import WeightsMapper

from ocrtune_inference.checkpoint import _map_name, lora_name_mapper

MAPPER = WeightsMapper(orig_to_new_prefix={"model.": "language_model.model."}, orig_to_new_substr={".old.": None})


class Vllm026Mapper:
    """WeightsMapper's interface in vLLM 0.26.0 (vllm/model_executor/models/utils.py): ``_map_name`` only."""

    def __init__(self, mapper: WeightsMapper) -> None:
        self._inner = mapper

    def _map_name(self, key: str) -> str | None:
        return self._inner.map_name(key)


def test_current_vllm_uses_the_rename_only_mapper():
    renames = lora_name_mapper(MAPPER)
    assert renames is not MAPPER
    assert _map_name(renames, "model.layers.0.q_proj.weight") == "language_model.model.layers.0.q_proj.weight"


def test_vllm_0_26_mapper_is_used_whole():
    old = Vllm026Mapper(MAPPER)
    assert lora_name_mapper(old) is old
    assert _map_name(old, "model.layers.0.q_proj.weight") == "language_model.model.layers.0.q_proj.weight"


def test_no_mapper():
    assert lora_name_mapper(None) is None
