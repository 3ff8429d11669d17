"""Unpacking user archives (zip, tar) without letting them escape their folder.

Used by the trainer (datasets shipped as archives) and the inference service
(adapter uploads): every member is checked BEFORE anything is written — no
absolute paths, no ``..``, no links or devices, and a cap on the unpacked size
(a zip bomb stops at the cap, not at a full disk).
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class ArchiveError(ValueError):
    """The archive is unreadable or unsafe; the message says which member and why."""


class ArchiveTooLarge(ArchiveError):
    """The archive unpacks to more than the cap (a 413 where a service answers it)."""


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(ARCHIVE_SUFFIXES):
        return True
    if name.endswith((".parquet", ".jsonl", ".csv", ".tsv", ".txt", ".json", ".safetensors")):
        return False
    return zipfile.is_zipfile(path) or tarfile.is_tarfile(path)


def _check_member_name(name: str) -> None:
    normalized = name.replace("\\", "/")
    parts = PurePosixPath(normalized).parts
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":") or ".." in parts:
        raise ArchiveError(
            f"archive member {name!r} points outside the archive folder ('..' or an absolute path); refusing to unpack"
        )


def _add_size(total: int, size: int, max_bytes: int) -> int:
    total += size
    if total > max_bytes:
        raise ArchiveTooLarge(f"archive unpacks to more than {max_bytes} bytes")
    return total


def safe_extract(archive: Path, target: Path, *, max_bytes: int) -> Path:
    """Unpack ``archive`` into ``target`` after checking every member; return the folder the content is in.

    An archive of one folder holds that folder: the returned path descends into it.
    """
    target.mkdir(parents=True, exist_ok=True)
    total = 0
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _check_member_name(info.filename)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise ArchiveError(f"archive member {info.filename!r} is a symbolic link")
                total = _add_size(total, info.file_size, max_bytes)
            zf.extractall(target)
    else:
        try:
            tf = tarfile.open(archive)
        except tarfile.TarError as exc:
            raise ArchiveError(f"not a readable zip or tar archive ({exc})") from None
        with tf:
            for member in tf.getmembers():
                _check_member_name(member.name)
                if member.issym() or member.islnk():
                    raise ArchiveError(
                        f"archive member {member.name!r} is a link ({member.linkname!r}); links are not allowed"
                    )
                if not (member.isfile() or member.isdir()):
                    raise ArchiveError(f"archive member {member.name!r} is not a file or folder")
                total = _add_size(total, member.size, max_bytes)
            tf.extractall(target, filter="data")
    entries = [p for p in target.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    while len(entries) == 1 and entries[0].is_dir():
        target = entries[0]
        entries = [p for p in target.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    return target
