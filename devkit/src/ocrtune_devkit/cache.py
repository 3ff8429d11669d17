"""The model cache: every built checkpoint or adapter goes into its folder the same way.

A folder's name carries a digest of what it was built from, so a changed spec never
reuses a stale build; it is written into a hidden staging folder beside it and appears by
one rename, so parallel test processes never see half a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

DEFAULT_CACHE = Path(os.environ.get("OCRTUNE_MODEL_CACHE", Path.home() / ".cache" / "ocrtune" / "models"))


def spec_digest(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:12]


def build_once(target: Path, write: Callable[[Path], None], *, marker: str, force: bool = False) -> Path:
    """Return ``target``, first running ``write(staging)`` and renaming it into place unless ``marker`` is there."""
    if target.joinpath(marker).exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        write(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
