"""What travels as a file: an image or PDF for ``POST /ocr``, a PEFT adapter for ``POST /adapters``."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO

from ocrtune_shared.adapters import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE

ImageSource = str | os.PathLike[str] | bytes


def _guess_media_type(name: str, data: bytes) -> str:
    if data[:5] == b"%PDF-" or name.lower().endswith(".pdf"):
        return "application/pdf"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] in (b"RIFF",) and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:2] == b"BM":
        return "image/bmp"
    return "application/octet-stream"


def read_image_source(source: ImageSource, filename: str | None = None) -> tuple[str, bytes, str]:
    """``(file name, bytes, media type)`` for an image or PDF given as a path or as bytes."""
    if isinstance(source, bytes):
        name = filename or "upload"
        data = source
    else:
        path = Path(source)
        data = path.read_bytes()
        name = filename or path.name
    return name, data, _guess_media_type(name, data)


def adapter_archive(source: str | os.PathLike[str]) -> tuple[str, BinaryIO]:
    """``(file name, open file)`` of what ``POST /adapters`` takes: an archive as is, or a PEFT folder zipped.

    Only the two files vLLM serves travel (a notebook's folder also holds the tokenizer, README, ...).
    The caller closes the file once it is sent.
    """
    path = Path(source)
    if path.is_dir():
        missing = [f for f in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE) if not (path / f).is_file()]
        if missing:
            raise ValueError(f"{path} is not a PEFT adapter folder: no {' or '.join(missing)}")
        spooled = tempfile.TemporaryFile()
        with zipfile.ZipFile(spooled, "w", zipfile.ZIP_STORED) as zf:  # safetensors hardly compress
            for name in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE):
                zf.write(path / name, name)
        spooled.seek(0)
        return f"{path.name or 'adapter'}.zip", spooled
    if not path.is_file():
        raise ValueError(f"no such adapter folder or archive: {path}")
    return path.name, open(path, "rb")
