"""Adapters as the service serves them: found in the store, checked, given a LoRA id, counted.

vLLM does the loading itself on first use of a ``LoRARequest`` (no restart, no
dropped requests), and evicts least-recently-used adapters from its device slots
(``max_loras``) and CPU cache (``max_cpu_loras``). The catalog resolves a request's
``name[@version]`` in the store (a remote store through its local mirror), runs the
checks vLLM does not make (``adapter_checks``) once per published version, and keeps
the LoRA ids, the usage and what the engine holds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from vllm.lora.request import LoRARequest

from ocrtune_inference.adapter_checks import AdapterChecks
from ocrtune_inference.checkpoint import LoraTargets
from ocrtune_inference.engine import OCREngine
from ocrtune_inference.metrics import ServiceMetrics
from ocrtune_shared.adapters import (
    ADAPTER_WEIGHTS_FILE,
    MANIFEST_FILE,
    AdapterInfo,
    AdapterList,
    AdapterManifest,
    AdapterState,
)
from ocrtune_shared.errors import ErrorCode, ServiceError
from ocrtune_shared.names import AdapterRef
from ocrtune_shared.store import (
    AdapterNotFound,
    AdapterStore,
    AdapterStoreError,
    StoredAdapter,
    StoreMirror,
    is_remote_store,
)

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
        if is_remote_store(store_url):
            self.mirror: StoreMirror | None = StoreMirror(store_url, cache_dir)
            self.store = self.mirror.local
        else:
            self.mirror = None
            self.store = AdapterStore(Path(store_url.removeprefix("file://")).expanduser())
        self.checks = AdapterChecks(self.store, served_model, served_dir, family, targets, max_lora_rank, metrics)
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

    def _validate(self, stored: StoredAdapter) -> ServedAdapter:
        manifest = self.checks.check(stored)
        digest = manifest.files.get(ADAPTER_WEIGHTS_FILE, "")
        with self._lock:
            lora_id = self._ids.setdefault((stored.name, stored.version, digest), len(self._ids) + 1)
        lora = LoRARequest(lora_name=stored.ref, lora_int_id=lora_id, lora_path=str(stored.path))
        return ServedAdapter(ref=stored.ref, name=stored.name, version=stored.version, manifest=manifest, lora=lora)

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
