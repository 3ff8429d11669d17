"""The checks an adapter passes before it reaches the engine: each failure a 4xx that names it.

vLLM loads whatever it is given and drops weight names it does not know without a word, so
before a first request (or an upload) an adapter must: be complete (every file with the
checksum its manifest records), be trained on the served base model and family, fit the
server's ``max_lora_rank``, and have every weight land on a LoRA module of the served model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from ocrtune_inference.checkpoint import LoraTargets
from ocrtune_inference.metrics import ServiceMetrics
from ocrtune_shared.adapters import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, AdapterManifest
from ocrtune_shared.errors import ErrorCode, ServiceError
from ocrtune_shared.store import AdapterStore, AdapterStoreError, StoredAdapter


def base_models_match(manifest_base: str, served: str, served_dir: Path) -> bool:
    """Same checkpoint: equal ids, the same local folder, or the same last path component.

    The trainer records the base as it saw it (a hub id, or a folder mounted elsewhere);
    the last component of a hub id or a snapshot folder names the checkpoint.
    """
    a, b = manifest_base.rstrip("/"), served.rstrip("/")
    if a == b:
        return True
    local = Path(a).expanduser()
    if local.is_dir() and local.resolve() == served_dir.resolve():
        return True
    names = {Path(b).name, served_dir.name}
    return Path(a).name in names


@dataclass
class AdapterChecks:
    """What the served model accepts: its base, family, LoRA modules and rank limit."""

    store: AdapterStore
    served_model: str
    served_dir: Path
    family: str
    targets: LoraTargets
    max_lora_rank: int
    metrics: ServiceMetrics

    def _reject(self, status: int, code: ErrorCode, reason: str, message: str, where: str) -> ServiceError:
        self.metrics.adapter_rejections.labels(reason=reason).inc()
        return ServiceError(status, code, message, where=where)

    def check(self, stored: StoredAdapter, label: str | None = None) -> AdapterManifest:
        """Every check a first request makes, on any adapter folder (a published version, or a staged upload).

        Raises the ``ServiceError`` a request would get; ``label`` names the adapter in it (default ``name@version``).
        """
        ref = label or stored.ref
        try:
            manifest = self.store.verify(stored)
        except AdapterStoreError as exc:
            raise self._reject(422, ErrorCode.adapter_invalid, "incomplete", str(exc), ref) from None
        for required in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE):
            if not (stored.path / required).is_file():
                raise self._reject(422, ErrorCode.adapter_invalid, "incomplete", f"adapter {ref} has no {required}", ref)
        if not base_models_match(manifest.base_model, self.served_model, self.served_dir):
            raise self._reject(
                409,
                ErrorCode.adapter_incompatible,
                "base_model",
                f"adapter {ref} was trained on {manifest.base_model!r}; this server serves {self.served_model!r}",
                ref,
            )
        if manifest.model_family != self.family:
            raise self._reject(
                409,
                ErrorCode.adapter_incompatible,
                "family",
                f"adapter {ref} is for model family {manifest.model_family!r}; this server serves {self.family!r}",
                ref,
            )
        try:
            config = json.loads((stored.path / ADAPTER_CONFIG_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise self._reject(
                422, ErrorCode.adapter_invalid, "unreadable", f"adapter {ref}: unreadable {ADAPTER_CONFIG_FILE}: {exc}", ref
            ) from None
        ranks = [manifest.rank, int(config.get("r") or 0), *[int(r) for r in (config.get("rank_pattern") or {}).values()]]
        if max(ranks) > self.max_lora_rank:
            raise self._reject(
                422,
                ErrorCode.adapter_incompatible,
                "rank",
                f"adapter {ref} has LoRA rank {max(ranks)}, above this server's max_lora_rank {self.max_lora_rank}",
                ref,
            )
        try:
            with safe_open(str(stored.path / ADAPTER_WEIGHTS_FILE), framework="pt") as handle:
                tensors = list(handle.keys())
        except Exception as exc:  # safetensors raises its own error types for bad headers
            raise self._reject(
                422, ErrorCode.adapter_invalid, "unreadable", f"adapter {ref}: unreadable weights: {exc}", ref
            ) from None
        if not tensors:
            raise self._reject(422, ErrorCode.adapter_invalid, "no_weights", f"adapter {ref} holds no weights", ref)
        unmatched = self.targets.unmatched(tensors)
        if unmatched:
            shown = ", ".join(unmatched[:5]) + (f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else "")
            raise self._reject(
                422,
                ErrorCode.adapter_incompatible,
                "unmatched_keys",
                f"adapter {ref}: {len(unmatched)} of {len(tensors)} weights land on no LoRA module of the served "
                f"model, so the engine would ignore them: {shown}",
                ref,
            )
        return manifest
