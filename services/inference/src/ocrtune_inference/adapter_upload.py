"""``POST /adapters``: a PEFT adapter folder uploaded as an archive, imported, checked, then published.

Order matters: the archive is unpacked (``safe_extract``: no ``..``, no links, a size
cap) into a temp folder, imported (``import_peft_adapter``, converting where the family
needs it) into a *staging* store beside it, and the staged version is checked exactly as
a first request would check it (``AdapterCatalog.check``). Only an adapter that passes is
published into the service's store, so a refused upload is never what its name resolves to.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from ocrtune_inference.catalog import AdapterCatalog
from ocrtune_shared.adapter_import import import_peft_adapter
from ocrtune_shared.adapter_layouts import AdapterLayoutError
from ocrtune_shared.adapters import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
    MANIFEST_FILE,
    AdapterInfo,
    AdapterManifest,
    AdapterState,
)
from ocrtune_shared.archives import ArchiveError, ArchiveTooLarge, safe_extract
from ocrtune_shared.errors import ErrorCode, ServiceError
from ocrtune_shared.names import AdapterRef
from ocrtune_shared.store import STAGING_DIR, AdapterStore, StoredAdapter

logger = logging.getLogger(__name__)

_COPY_CHUNK = 1 << 20


def _invalid(message: str, where: str = "file", status: int = 422, code: ErrorCode = ErrorCode.adapter_invalid):
    return ServiceError(status, code, message, where)


def _save(upload: BinaryIO, target: Path, max_bytes: int) -> None:
    size = 0
    with open(target, "wb") as out:
        while block := upload.read(_COPY_CHUNK):
            size += len(block)
            if size > max_bytes:
                raise _invalid(
                    f"adapter archive of {size}+ bytes exceeds the limit of {max_bytes} bytes",
                    status=413,
                    code=ErrorCode.payload_too_large,
                )
            out.write(block)


def _unpack(archive: Path, target: Path, max_bytes: int) -> Path:
    try:
        folder = safe_extract(archive, target, max_bytes=max_bytes)
    except ArchiveTooLarge as exc:
        raise _invalid(str(exc), status=413, code=ErrorCode.payload_too_large) from None
    except ArchiveError as exc:
        raise _invalid(f"not a usable adapter archive (zip or tar of a PEFT folder): {exc}") from None
    for required in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE):
        if not (folder / required).is_file():
            found = sorted(p.name for p in folder.iterdir())[:10]
            raise _invalid(
                f"the archive holds no {required} (a PEFT adapter folder has {ADAPTER_CONFIG_FILE} and "
                f"{ADAPTER_WEIGHTS_FILE}); found: {', '.join(found) or 'nothing'}"
            )
    try:
        config = json.loads((folder / ADAPTER_CONFIG_FILE).read_text())
        rank = int(config["r"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _invalid(f"unreadable {ADAPTER_CONFIG_FILE} (JSON with a LoRA rank 'r' expected): {exc}") from None
    if rank < 1:
        raise _invalid(f"{ADAPTER_CONFIG_FILE}: LoRA rank r must be at least 1, not {rank}")
    return folder


def _stage(folder: Path, staging_root: Path, *, name: str, base_model: str, model_family: str) -> StoredAdapter:
    try:
        return import_peft_adapter(
            AdapterStore(staging_root), folder, name=name, base_model=base_model, model_family=model_family
        )
    except AdapterLayoutError as exc:
        raise _invalid(f"vLLM cannot serve this adapter: {exc}", code=ErrorCode.adapter_incompatible) from None
    except LookupError as exc:  # a model_family no service knows
        raise _invalid(str(exc), code=ErrorCode.invalid_request, where="model_family") from None
    except OSError:
        raise
    except Exception as exc:  # what the user sent could not be converted: say why, keep serving
        logger.warning("adapter upload %s: import failed", name, exc_info=True)
        raise _invalid(f"could not import the adapter: {type(exc).__name__}: {exc}") from None


def _publish(store: AdapterStore, staged: StoredAdapter, manifest: AdapterManifest) -> StoredAdapter:
    def write(folder: Path) -> AdapterManifest:
        for path in staged.path.iterdir():
            if path.is_file() and path.name != MANIFEST_FILE:
                shutil.move(path, folder / path.name)
        return manifest

    return store.publish(staged.name, write)


def upload_adapter(
    catalog: AdapterCatalog,
    upload: BinaryIO,
    *,
    name: str,
    base_model: str | None,
    model_family: str | None,
    max_bytes: int,
) -> AdapterInfo:
    """Import the uploaded archive as a new version of ``name``; its ``AdapterInfo``, or a ``ServiceError``.

    Blocking (unpacking, hashing): call it in a thread.
    """
    if catalog.mirror is not None:
        raise ServiceError(
            409,
            ErrorCode.invalid_request,
            "this server reads adapters from a remote store (mirrored read-only); uploads need a local store: "
            "publish to the remote store with `python -m ocrtune_shared.adapter_import` instead",
            "adapter_store",
        )
    for field, value in (("base_model", base_model), ("model_family", model_family)):
        if value is not None and (len(value) > 500 or any(ord(c) < 32 for c in value)):
            raise _invalid(
                f"{field} must be a model id or path (printable, at most 500 characters)",
                field,
                code=ErrorCode.invalid_request,
            )
    base_model = (base_model or "").strip() or catalog.checks.served_model
    model_family = (model_family or "").strip() or catalog.checks.family
    store = catalog.store
    (store.root / STAGING_DIR).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"upload-{name}-", dir=store.root / STAGING_DIR) as tmp:
        work = Path(tmp)
        archive = work / "upload"
        _save(upload, archive, max_bytes)
        folder = _unpack(archive, work / "unpacked", max_bytes)
        staged = _stage(folder, work / "store", name=name, base_model=base_model, model_family=model_family)
        # The same checks as a first request, before anything is visible under ``name``.
        manifest = catalog.checks.check(staged, label=f"{name} (upload)")
        published = _publish(store, staged, manifest)
    try:
        served = catalog.resolve_sync(AdapterRef(name=name, version=published.version))
    except ServiceError:
        # Passed as staged, so this is the store changing under us; never leave it resolvable.
        shutil.rmtree(published.path, ignore_errors=True)
        raise
    logger.info("adapter upload: published %s (base %s, family %s)", served.ref, base_model, model_family)
    versions = store.versions(name)
    return AdapterInfo(
        name=name,
        version=published.version,
        latest=bool(versions) and versions[-1] == published.version,
        state=AdapterState.stored,
        base_model=served.manifest.base_model,
        rank=served.manifest.rank,
        cer_before=served.manifest.cer_before,
        cer_after=served.manifest.cer_after,
    )
