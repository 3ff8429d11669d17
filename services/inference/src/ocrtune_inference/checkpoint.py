"""Where the base checkpoint lives, and which of its modules vLLM applies LoRA to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open

# vLLM wraps every linear layer of the language model; embeddings and the LM head only
# when the model lists them in ``embedding_modules``.
_EMBEDDING_NAMES = ("embed_tokens", "lm_head", "wte", "word_embeddings")


def resolve_model_dir(model: str) -> Path:
    """A local folder as is; a hub id through the local hub cache (downloading if allowed)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]))


def _weight_shapes(model_dir: Path) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                shapes[key] = list(handle.get_slice(key).get_shape())
    return shapes


def lora_name_mapper(mapper: Any) -> Any:
    """The part of a model's ``hf_to_vllm_mapper`` that vLLM's LoRA loader applies to adapter keys.

    vLLM >= 0.30 applies only the renames (``WeightsMapper.get_rename_mapper``, worker_manager.py);
    vLLM 0.26 (the version proven on the GPU machine, docs/gpu-machine.md) has no such method
    and applies the whole mapper. One place for the difference between the versions.
    """
    if mapper is None:
        return None
    return mapper.get_rename_mapper() if hasattr(mapper, "get_rename_mapper") else mapper


def _map_name(mapper: Any, key: str) -> str | None:
    # ``map_name`` in vLLM >= 0.30; ``_map_name`` before.
    return mapper.map_name(key) if hasattr(mapper, "map_name") else mapper._map_name(key)


@dataclass(frozen=True)
class LoraTargets:
    """The module names (as vLLM's LoRA loader names them) that take LoRA weights."""

    modules: frozenset[str]
    rename_mapper: object | None

    @classmethod
    def for_checkpoint(cls, model_dir: Path, vllm_model_class: type) -> LoraTargets:
        mapper = lora_name_mapper(getattr(vllm_model_class, "hf_to_vllm_mapper", None))
        excluded: list[str] = list(getattr(vllm_model_class, "lora_skip_prefixes", None) or [])
        if hasattr(vllm_model_class, "get_mm_mapping"):
            # Tower and connector LoRA is off (enable_tower_connector_lora defaults to False).
            mm = vllm_model_class.get_mm_mapping(None)
            excluded += list(mm.tower_model) + list(mm.connector)
        embedding_ok = set(getattr(vllm_model_class, "embedding_modules", {}) or {})
        modules: set[str] = set()
        for key, shape in _weight_shapes(model_dir).items():
            if not key.endswith(".weight") or len(shape) != 2:
                continue
            name = _map_name(mapper, key) if mapper is not None else key
            if name is None:
                continue
            module = name[: -len(".weight")]
            leaf = module.rsplit(".", 1)[-1]
            if leaf in _EMBEDDING_NAMES and leaf not in embedding_ok:
                continue
            if any(module.startswith(prefix) for prefix in excluded):
                continue
            modules.add(module)
        return cls(frozenset(modules), mapper)

    def unmatched(self, tensor_names: list[str]) -> list[str]:
        """Adapter tensors that would land on no LoRA module (vLLM would drop them silently)."""
        from vllm.lora.utils import parse_fine_tuned_lora_name

        missing = []
        for tensor in tensor_names:
            try:
                module, _ = parse_fine_tuned_lora_name(tensor, self.rename_mapper)
            except ValueError:
                missing.append(tensor)
                continue
            if module not in self.modules:
                missing.append(tensor)
        return missing
