"""The adapter store on a filesystem: the trainer publishes, the inference service reads.

Layout: ``<root>/<name>/<version>/`` holding the PEFT files and ``manifest.json``
(see ``ocrtune_shared.adapters``). A version is written into a hidden staging
folder under ``<root>/.staging/`` (``stage``) and appears by one ``os.rename``
(``commit``), so a reader never sees half an adapter, and two publishers never take
the same version (``rename`` onto an existing folder fails, and the publisher retries
with the next).

``RemoteAdapterStore`` is the same layout behind an fsspec URL (S3 and the like), written by
the trainer; ``StoreMirror`` is the inference service's local, version-by-version copy of one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrtune_shared.adapters import ADAPTER_CONFIG_FILE, MANIFEST_FILE, AdapterManifest
from ocrtune_shared.names import AdapterRef, validate_adapter_name

STAGING_DIR = ".staging"


class AdapterNotFound(LookupError):
    pass


class AdapterStoreError(RuntimeError):
    pass


@dataclass(frozen=True)
class StagedAdapter:
    """A version being written: files go into ``path``, invisible to readers until committed."""

    name: str
    path: Path


@dataclass(frozen=True)
class StoredAdapter:
    name: str
    version: int
    path: Path

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def manifest(self) -> AdapterManifest:
        try:
            return AdapterManifest.model_validate_json((self.path / MANIFEST_FILE).read_text())
        except FileNotFoundError:
            raise AdapterStoreError(f"adapter {self.ref} has no {MANIFEST_FILE}") from None
        except ValueError as exc:
            raise AdapterStoreError(f"adapter {self.ref} has an unreadable {MANIFEST_FILE}: {exc}") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class AdapterStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def versions(self, name: str) -> list[int]:
        folder = self.root / validate_adapter_name(name)
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())

    def resolve(self, ref: AdapterRef | str) -> StoredAdapter:
        """The stored adapter ``ref`` names (latest version when none is given)."""
        ref = AdapterRef.parse(ref) if isinstance(ref, str) else ref
        versions = self.versions(ref.name)
        if not versions:
            raise AdapterNotFound(f"adapter {ref.name!r} is not in the store")
        version = ref.version or versions[-1]
        if version not in versions:
            raise AdapterNotFound(f"adapter {ref.name!r} has no version {version} (versions: {versions})")
        return StoredAdapter(ref.name, version, self.root / ref.name / str(version))

    def all(self) -> list[StoredAdapter]:
        return [StoredAdapter(n, v, self.root / n / str(v)) for n in self.names() for v in self.versions(n)]

    @contextmanager
    def stage(self, name: str) -> Iterator[StagedAdapter]:
        """A hidden, empty staging folder for a new version of ``name``; gone on exit unless committed."""
        validate_adapter_name(name)
        staging_root = self.root / STAGING_DIR
        staging_root.mkdir(parents=True, exist_ok=True)
        staged = StagedAdapter(name, Path(tempfile.mkdtemp(prefix=f"{name}-", dir=staging_root)))
        try:
            yield staged
        finally:
            shutil.rmtree(staged.path, ignore_errors=True)

    def commit(self, staged: StagedAdapter, manifest: AdapterManifest) -> StoredAdapter:
        """Make the staged files the next version of their adapter, in one rename.

        The manifest (its ``name`` and ``version`` set here, with the sha256 of every staged
        file) is written last; a reader never sees a version without it.
        """
        name, folder = staged.name, staged.path
        if not (folder / ADAPTER_CONFIG_FILE).is_file():
            raise AdapterStoreError(f"publishing {name!r}: {ADAPTER_CONFIG_FILE} was not written")
        (self.root / name).mkdir(parents=True, exist_ok=True)
        manifest = manifest.model_copy(
            update={"files": {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}}
        )
        for _ in range(100):
            version = (self.versions(name) or [0])[-1] + 1
            manifest = manifest.model_copy(update={"name": name, "version": version})
            (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
            _fsync_dir(folder)
            try:
                os.rename(folder, self.root / name / str(version))
            except OSError:
                if (self.root / name / str(version)).exists():
                    continue  # another publisher took this version; take the next
                raise
            _fsync_dir(self.root / name)
            return StoredAdapter(name, version, self.root / name / str(version))
        raise AdapterStoreError(f"publishing {name!r}: no free version after 100 tries")

    def publish(self, name: str, write: Callable[[Path], AdapterManifest]) -> StoredAdapter:
        """Stage and commit in one call: ``write(folder)`` writes the files and returns the manifest."""
        with self.stage(name) as staged:
            return self.commit(staged, write(staged.path))

    def verify(self, adapter: StoredAdapter) -> AdapterManifest:
        """The manifest, after checking every file it lists is present with its recorded sha256."""
        manifest = adapter.manifest()
        for file_name, digest in manifest.files.items():
            path = adapter.path / file_name
            if not path.is_file():
                raise AdapterStoreError(f"adapter {adapter.ref} is missing {file_name}")
            if sha256_file(path) != digest:
                raise AdapterStoreError(f"adapter {adapter.ref}: {file_name} does not match its manifest checksum")
        return manifest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def child_names(fs: Any, path: str) -> list[str]:
    """The names of the entries under ``path`` on an fsspec filesystem (none if it does not exist)."""
    try:
        return [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    except FileNotFoundError:
        return []


def is_remote_store(location: str | Path) -> bool:
    """``s3://bucket/prefix`` and other fsspec URLs, as opposed to a local folder."""
    return "://" in str(location) and not str(location).startswith("file://")


class RemoteAdapterStore:
    """An adapter store behind an fsspec URL (``s3://bucket/adapters``), written by the trainer.

    Object stores have no atomic rename, so the store's guarantee is kept by order: a
    version's files are uploaded first and its manifest LAST; readers (the inference
    service's mirror) ignore a version folder until its manifest is there. The version
    number is the highest one present plus one: two trainers publishing the same name at
    the same moment could collide, so run one publishing worker per name (the job queue
    runs one job at a time per worker).
    """

    def __init__(self, url: str) -> None:
        import fsspec

        self.url = url.rstrip("/")
        self.fs, root = fsspec.core.url_to_fs(self.url)
        self.root = root.rstrip("/")

    def versions(self, name: str) -> list[int]:
        validate_adapter_name(name)
        return sorted(int(v) for v in child_names(self.fs, f"{self.root}/{name}") if v.isdigit())

    def upload(self, local: StoredAdapter) -> int:
        """Copy a locally published (and verified) version up as the next remote version; return it."""
        manifest = local.manifest()
        version = (self.versions(local.name) or [0])[-1] + 1
        remote = f"{self.root}/{local.name}/{version}"
        for file_name in manifest.files:
            self.fs.put_file(str(local.path / file_name), f"{remote}/{file_name}")
        remote_manifest = manifest.model_copy(update={"version": version})
        self.fs.pipe_file(f"{remote}/{MANIFEST_FILE}", remote_manifest.model_dump_json(indent=2).encode())
        return version


class StoreMirror:
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

    def names(self) -> list[str]:
        return sorted(n for n in child_names(self.fs, self.root) if not n.startswith("."))

    def sync(self, name: str, *, max_age_s: float = 0.0) -> None:
        """Mirror the versions of ``name`` not yet here; skipped if done less than ``max_age_s`` ago."""
        with self._lock:
            if time.monotonic() - self._synced.get(name, -1e9) < max_age_s:
                return
            self._synced[name] = time.monotonic()
            remote_versions = [v for v in child_names(self.fs, f"{self.root}/{name}") if v.isdigit()]
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
                    for file_name in child_names(self.fs, remote):
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
