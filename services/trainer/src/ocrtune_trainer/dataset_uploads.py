"""Datasets uploaded over HTTP (``POST /datasets``): checked, stored under the trainer's data folder, given a URI.

The web console's "upload a file" and any client without a shared folder or bucket use
it. A parquet file is kept as it is; a zip or tar of a dataset folder is unpacked (every
member checked, as for dataset URIs) so that jobs read the folder without unpacking it
again. The answer's ``uri`` is a local path under ``uploads_dir``, which POST /finetune
accepts whatever the data roots are.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
import uuid
import zipfile
from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.types import Message

from ocrtune_shared.archives import ARCHIVE_SUFFIXES, ArchiveError, ArchiveTooLarge, safe_extract
from ocrtune_shared.console import DatasetUpload
from ocrtune_shared.errors import ErrorCode, ServiceError
from ocrtune_shared.finetune import DatasetFormat
from ocrtune_trainer.datasets import DatasetError, detect_format
from ocrtune_trainer.settings import TrainerSettings

ACCEPTED_SUFFIXES = (".parquet", *ARCHIVE_SUFFIXES)
# Multipart framing and the form's other fields around the file.
FORM_OVERHEAD = 64 * 1024
_CHUNK = 1 << 20


def _too_large(limit: int) -> ServiceError:
    return ServiceError(
        413, ErrorCode.payload_too_large, f"the dataset upload exceeds the limit of {limit} bytes", "file"
    )


async def receive_dataset(request: Request, settings: TrainerSettings) -> DatasetUpload:
    """Read the multipart body (field ``file``) within the size limit, then store and check the file."""
    from fastapi.concurrency import run_in_threadpool

    limit = settings.max_dataset_upload_bytes
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        raise ServiceError(
            415, ErrorCode.unsupported_media_type, "send multipart/form-data with the dataset file in field 'file'"
        )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + FORM_OVERHEAD:
        raise _too_large(limit)
    received = 0

    # Counted as it arrives: a body sent without Content-Length (chunked) is cut off at the
    # limit instead of being spooled to disk whole before anyone looks at its size.
    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit + FORM_OVERHEAD:
            raise _too_large(limit)
        return message

    form = await Request(request.scope, receive).form(max_files=1, max_fields=8)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ServiceError(
                422, ErrorCode.invalid_request, "multipart field 'file' (the dataset file) is required", "file"
            )
        return await run_in_threadpool(store_upload, upload.file, upload.filename or "", settings)
    finally:
        await form.close()


def safe_file_name(name: str) -> str:
    """The file's own name (no folders, no path tricks), in characters every file system takes."""
    base = re.split(r"[\\/]", name)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".")
    return cleaned[-120:] or "dataset"


def _accepted_suffix(name: str) -> str:
    lowered = name.lower()
    for suffix in sorted(ACCEPTED_SUFFIXES, key=len, reverse=True):
        if lowered.endswith(suffix):
            return suffix
    raise ServiceError(
        415,
        ErrorCode.unsupported_media_type,
        f"{name or 'the file'} is not a dataset file the trainer takes: upload a .parquet file, or a "
        f"zip/tar ({', '.join(ARCHIVE_SUFFIXES)}) of an image folder with its labels file",
        "file",
    )


def _copy_within(source: BinaryIO, target: Path, limit: int) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(target, "wb") as out:
        while chunk := source.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            digest.update(chunk)
            out.write(chunk)
    return size, digest.hexdigest()


def _is_parquet(path: Path) -> bool:
    # A parquet file begins and ends with the magic bytes PAR1.
    with open(path, "rb") as handle:
        head = handle.read(4)
        if path.stat().st_size < 12:
            return False
        handle.seek(-4, 2)
        return head == b"PAR1" and handle.read(4) == b"PAR1"


def store_upload(source: BinaryIO, filename: str, settings: TrainerSettings) -> DatasetUpload:
    """Store ``source`` under a folder of its own in ``uploads_dir``; refuse what no job could read."""
    name = safe_file_name(filename)
    suffix = _accepted_suffix(name)
    folder = settings.uploads_dir / uuid.uuid4().hex
    folder.mkdir(parents=True)
    try:
        target = folder / name
        size, sha256 = _copy_within(source, target, settings.max_dataset_upload_bytes)
        if suffix == ".parquet":
            if not _is_parquet(target):
                raise ServiceError(
                    415, ErrorCode.unsupported_media_type, f"{name} is not a parquet file (no PAR1 magic bytes)", "file"
                )
            rows = _parquet_rows(target)
            return DatasetUpload(
                uri=str(target), filename=name, bytes=size, sha256=sha256, format=DatasetFormat.parquet, rows=rows
            )
        if not (zipfile.is_zipfile(target) or tarfile.is_tarfile(target)):
            raise ServiceError(
                415, ErrorCode.unsupported_media_type, f"{name} is not a zip or tar archive", "file"
            )
        try:
            dataset = safe_extract(target, folder / "dataset", max_bytes=settings.max_extract_bytes)
        except ArchiveTooLarge as exc:
            raise ServiceError(413, ErrorCode.payload_too_large, str(exc), name) from None
        except ArchiveError as exc:
            raise ServiceError(422, ErrorCode.dataset_invalid, str(exc), name) from None
        target.unlink()
        try:
            fmt = detect_format(dataset)
        except DatasetError as exc:
            raise ServiceError(422, exc.code, f"{name}: {exc.message}", name) from None
        return DatasetUpload(uri=str(dataset), filename=name, bytes=size, sha256=sha256, format=fmt)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception as exc:  # pyarrow raises several types for a damaged footer
        raise ServiceError(
            422, ErrorCode.dataset_invalid, f"{path.name} is not a readable parquet file ({exc})", "file"
        ) from None
