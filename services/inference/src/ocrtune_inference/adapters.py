"""Adapters as the service serves them: found in the store, validated, given a LoRA id.

vLLM does the loading itself on first use of a ``LoRARequest`` (no restart, no
dropped requests), and evicts least-recently-used adapters from its device slots
(``max_loras``) and CPU cache (``max_cpu_loras``). What vLLM does not do, and this
module does before an adapter reaches it: check that the adapter exists, was trained
on the served model, fits ``max_lora_rank``, is complete (manifest checksums), and
that every weight in it lands on a LoRA module (vLLM drops unmatched names silently).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open
from vllm.lora.request import LoRARequest

from ocrtune_inference.checkpoint import LoraTargets
from ocrtune_inference.engine import OCREngine
from ocrtune_inference.metrics import ServiceMetrics
from ocrtune_shared.adapters import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
    MANIFEST_FILE,
    AdapterInfo,
    AdapterList,
    AdapterManifest,
    AdapterState,
)
from ocrtune_shared.errors import ErrorCode, ServiceError
from ocrtune_shared.names import AdapterRef
from ocrtune_shared.store import AdapterNotFound, AdapterStore, AdapterStoreError, StoredAdapter

logger = logging.getLogger(__name__)

MIRROR_MAX_AGE_S = 2.0


@dataclass(frozen=True)
class ServedAdapter:
    ref: str
    """``name@version``"""
    name: str
    version: int
    manifest: AdapterManifest
    lora: LoRARequest


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


class RemoteStoreMirror:
    """A read-only fsspec store (``s3://bucket/adapters``...) mirrored version by version to a local folder.

    A version is downloaded into a staging folder and renamed into place, so the local
    store keeps the same never-half-written guarantee as a local one. Versions never
    change once published, so a version already mirrored is never fetched again.
    """

    def __init__(self, url: str, cache_dir: Path) -> None:
        import fsspec

        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.root = self.root.rstrip("/")
        self.local = AdapterStore(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._synced: dict[str, float] = {}

    def _children(self, path: str) -> list[str]:
        try:
            return [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False)]
        except FileNotFoundError:
            return []

    def names(self) -> list[str]:
        return sorted(n for n in self._children(self.root) if not n.startswith("."))

    def sync(self, name: str, *, max_age_s: float = 0.0) -> None:
        """Mirror the versions of ``name`` not yet here; skipped if done less than ``max_age_s`` ago."""
        with self._lock:
            if time.monotonic() - self._synced.get(name, -1e9) < max_age_s:
                return
            self._synced[name] = time.monotonic()
            remote_versions = [v for v in self._children(f"{self.root}/{name}") if v.isdigit()]
            have = set(self.local.versions(name))
            for version in remote_versions:
                if int(version) in have:
                    continue
                remote = f"{self.root}/{name}/{version}"
                if not self.fs.exists(f"{remote}/{MANIFEST_FILE}"):
                    continue  # still being uploaded: the manifest is written last
                staging_root = self.local.root / ".staging"
                staging_root.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=staging_root))
                try:
                    for file_name in self._children(remote):
                        self.fs.get(f"{remote}/{file_name}", str(staging / file_name))
                    (self.local.root / name).mkdir(parents=True, exist_ok=True)
                    staging.rename(self.local.root / name / version)
                except OSError:
                    if not (self.local.root / name / version).exists():
                        raise
                finally:
                    shutil.rmtree(staging, ignore_errors=True)

    def sync_all(self) -> None:
        for name in self.names():
            self.sync(name)


class AdapterCatalog:
    """The store as the engine sees it: references resolved, adapters validated, LoRA ids, usage."""

    def __init__(
        self,
        store_url: str,
        cache_dir: Path,
        *,
        served_model: str,
        served_dir: Path,
        family: str,
        targets: LoraTargets,
        max_lora_rank: int,
        max_loras: int,
        engine: OCREngine,
        metrics: ServiceMetrics,
    ) -> None:
        if "://" in store_url and not store_url.startswith("file://"):
            self.mirror: RemoteStoreMirror | None = RemoteStoreMirror(store_url, cache_dir)
            self.store = self.mirror.local
        else:
            self.mirror = None
            self.store = AdapterStore(Path(store_url.removeprefix("file://")).expanduser())
        self.served_model = served_model
        self.served_dir = served_dir
        self.family = family
        self.targets = targets
        self.max_lora_rank = max_lora_rank
        self.max_loras = max_loras
        self.engine = engine
        self.metrics = metrics
        # (name, version, weights digest) -> id: a republished folder under a reused
        # version number gets a new id, so vLLM never serves its cached old weights.
        self._ids: dict[tuple[str, int, str], int] = {}
        self._validated: dict[tuple[str, int, float], ServedAdapter | ServiceError] = {}
        self._recent: OrderedDict[int, ServedAdapter] = OrderedDict()
        self._requests: dict[str, int] = {}
        self._known_loaded: set[int] = set()
        self._lock = threading.Lock()

    # --- resolving and validating -------------------------------------------------------

    async def resolve(self, text: str) -> ServedAdapter:
        """The validated adapter ``text`` (``name`` or ``name@version``) names, or a ``ServiceError``."""
        try:
            ref = AdapterRef.parse(text)
        except ValueError as exc:
            raise ServiceError(422, ErrorCode.invalid_request, _first_error(exc), where="adapter") from None
        if self.mirror is not None:  # network: keep it off the event loop
            return await asyncio.to_thread(self._resolve_sync, ref)
        with self._lock:
            cached = self._validated.get(self._cache_key(ref))
        # A validated adapter costs a directory listing and a stat; only a first sight
        # (checksums, weight names) is worth a thread.
        if isinstance(cached, ServedAdapter):
            return cached
        return await asyncio.to_thread(self._resolve_sync, ref)

    def _cache_key(self, ref: AdapterRef) -> tuple[str, int, float] | None:
        try:
            stored = self.store.resolve(ref)
            return (stored.name, stored.version, (stored.path / MANIFEST_FILE).stat().st_mtime)
        except (AdapterNotFound, OSError):
            return None

    def resolve_sync(self, ref: AdapterRef) -> ServedAdapter:
        """``resolve`` for callers already off the event loop (an upload, in its thread)."""
        return self._resolve_sync(ref)

    def _resolve_sync(self, ref: AdapterRef) -> ServedAdapter:
        if self.mirror is not None:
            try:
                # A listing per request would put the remote store on every request's path;
                # a new version shows within MIRROR_MAX_AGE_S (the trainer's <= 5 s target).
                pinned_here = ref.version is not None and ref.version in self.store.versions(ref.name)
                if not pinned_here:
                    self.mirror.sync(ref.name, max_age_s=MIRROR_MAX_AGE_S)
            except OSError as exc:
                logger.warning("adapter store mirror: syncing %s failed: %s", ref.name, exc)
        try:
            stored = self.store.resolve(ref)
        except AdapterNotFound as exc:
            self.metrics.adapter_rejections.labels(reason="not_found").inc()
            raise ServiceError(404, ErrorCode.adapter_not_found, str(exc), where=str(ref)) from None
        try:
            stamp = (stored.path / MANIFEST_FILE).stat().st_mtime
        except FileNotFoundError:
            stamp = -1.0
        key = (stored.name, stored.version, stamp)
        with self._lock:
            cached = self._validated.get(key)
        if isinstance(cached, ServiceError):
            self.metrics.adapter_rejections.labels(reason="cached").inc()
            raise cached
        if cached is not None:
            return cached
        try:
            served = self._validate(stored)
        except ServiceError as exc:
            # A published version never changes, so neither does its verdict: hash it once.
            with self._lock:
                self._validated[key] = exc
            raise
        with self._lock:
            self._validated[key] = served
        return served

    def _reject(self, status: int, code: ErrorCode, reason: str, message: str, where: str) -> ServiceError:
        self.metrics.adapter_rejections.labels(reason=reason).inc()
        return ServiceError(status, code, message, where=where)

    def _validate(self, stored: StoredAdapter) -> ServedAdapter:
        manifest = self.check(stored)
        digest = manifest.files.get(ADAPTER_WEIGHTS_FILE, "")
        with self._lock:
            lora_id = self._ids.setdefault((stored.name, stored.version, digest), len(self._ids) + 1)
        lora = LoRARequest(lora_name=stored.ref, lora_int_id=lora_id, lora_path=str(stored.path))
        return ServedAdapter(ref=stored.ref, name=stored.name, version=stored.version, manifest=manifest, lora=lora)

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

    # --- usage, load, unload, list ------------------------------------------------------

    def mark_used(self, adapter: ServedAdapter) -> None:
        with self._lock:
            if adapter.lora.lora_int_id not in self._known_loaded:
                # Not loaded as far as we know: the engine loads it for this request.
                self._known_loaded.add(adapter.lora.lora_int_id)
                self.metrics.adapter_first_use.inc()
            self._recent[adapter.lora.lora_int_id] = adapter
            self._recent.move_to_end(adapter.lora.lora_int_id)
            self._requests[adapter.ref] = self._requests.get(adapter.ref, 0) + 1

    async def load(self, text: str) -> ServedAdapter:
        adapter = await self.resolve(text)
        try:
            await self.engine.add_lora(adapter.lora)
        except Exception as exc:
            self.metrics.adapter_loads.labels(result="error").inc()
            raise ServiceError(
                422, ErrorCode.adapter_invalid, f"the engine could not load adapter {adapter.ref}: {exc}", adapter.ref
            ) from None
        self.metrics.adapter_loads.labels(result="ok").inc()
        self.mark_used(adapter)
        await self.refresh_loaded()
        return adapter

    async def unload(self, name: str) -> list[str]:
        """Unload every version of ``name`` from the engine; the store keeps them."""
        try:
            ref = AdapterRef.parse(name)
        except ValueError as exc:
            raise ServiceError(422, ErrorCode.invalid_request, _first_error(exc), where="name") from None
        if not self.store.versions(ref.name) and (self.mirror is None or ref.name not in self.mirror.names()):
            raise ServiceError(404, ErrorCode.adapter_not_found, f"adapter {ref.name!r} is not in the store", ref.name)
        loaded = await self.engine.list_loras()
        removed = []
        with self._lock:
            ids = {i: key for key, i in self._ids.items() if key[0] == ref.name and (ref.version in (None, key[1]))}
        for lora_id, key in ids.items():
            if lora_id in loaded:
                await self.engine.remove_lora(lora_id)
                removed.append(f"{key[0]}@{key[1]}")
            with self._lock:
                self._recent.pop(lora_id, None)
        await self.refresh_loaded()
        return removed

    async def refresh_loaded(self) -> set[int]:
        """The engine's loaded adapters; counts those it evicted since the last look."""
        loaded = set(await self.engine.list_loras())
        with self._lock:
            gone = self._known_loaded - loaded
            self._known_loaded = loaded
            for lora_id in gone:
                self._recent.pop(lora_id, None)
        if gone:
            self.metrics.adapter_evictions.inc(len(gone))
        self.metrics.adapters_loaded.set(len(loaded))
        return loaded

    async def list(self) -> AdapterList:
        if self.mirror is not None:
            await asyncio.to_thread(self.mirror.sync_all)  # listing: the new names are wanted now
        loaded = await self.refresh_loaded()
        with self._lock:
            # vLLM does not report its slot contents; the most recently used loaded
            # adapters, up to max_loras, are the ones that hold device slots.
            recent = [i for i in reversed(self._recent) if i in loaded][: self.max_loras]
            by_key = dict(self._ids)
            requests = dict(self._requests)
        infos = []
        for stored in await asyncio.to_thread(self.store.all):
            try:
                manifest = stored.manifest()
            except AdapterStoreError:
                continue  # listed only when readable; a request for it says what is wrong
            lora_id = by_key.get((stored.name, stored.version, manifest.files.get(ADAPTER_WEIGHTS_FILE, "")))
            state = AdapterState.stored
            if lora_id is not None and lora_id in loaded:
                state = AdapterState.device if lora_id in recent else AdapterState.cpu
            infos.append(
                AdapterInfo(
                    name=stored.name,
                    version=stored.version,
                    latest=stored.version == self.store.versions(stored.name)[-1],
                    state=state,
                    base_model=manifest.base_model,
                    rank=manifest.rank,
                    cer_before=manifest.cer_before,
                    cer_after=manifest.cer_after,
                    requests=requests.get(stored.ref, 0),
                )
            )
        return AdapterList(adapters=infos)


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            return "; ".join(str(e.get("msg", e)).removeprefix("Value error, ") for e in errors())
        except Exception:  # pydantic's error list is best effort here
            pass
    return str(exc)
