"""The consoles' files ship inside the packages, so the services' images (built from wheels) serve them too."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "shared": ("ocrtune_shared", "console_assets"),
    "services/inference": ("ocrtune_inference", "ui"),
    "services/trainer": ("ocrtune_trainer", "ui"),
}


def test_console_files_are_in_the_wheels(tmp_path: Path) -> None:
    for source, (package, folder) in PACKAGES.items():
        # Built from a copy: an in-tree build would leave build/ folders in the checkout.
        copy = tmp_path / source
        shutil.copytree(ROOT / source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "wheels"),
             str(copy)],
            capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stderr
        wheel = next((tmp_path / "wheels").glob(f"{package}-*.whl"))
        shipped = set(zipfile.ZipFile(wheel).namelist())
        files = sorted((ROOT / source / "src" / package / folder).iterdir())
        assert files
        for path in files:
            assert f"{package}/{folder}/{path.name}" in shipped, f"{path.name} is missing from {wheel.name}"
