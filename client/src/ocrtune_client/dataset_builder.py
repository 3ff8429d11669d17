"""Build a training parquet from a folder of images and a labels file.

The layout of the reference user's script: ``image`` (encoded bytes, as the HF
``datasets`` ``Image`` feature stores it) and ``text``. Every row is checked
(missing file, unreadable image, empty text, path outside the folder); each bad
row is reported by its line number in the labels file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ocrtune_shared.image_parquet import write_image_parquet
from ocrtune_shared.images import ImageDecodeError, decode_image
from ocrtune_shared.labels import LabelProblem, LabelsFileNotFound, find_labels_file, read_labels_file


@dataclass
class BuildReport:
    output: Path | None
    rows_written: int = 0
    problems: list[LabelProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def build_parquet(
    images_dir: Path | str,
    output: Path | str,
    *,
    labels: Path | str | None = None,
    skip_bad: bool = False,
    progress: bool = True,
) -> BuildReport:
    """Check every row, then write ``output`` (only if no row is bad, unless ``skip_bad``)."""
    images_dir = Path(images_dir).resolve()
    try:
        labels_path = Path(labels) if labels else find_labels_file(images_dir)
    except LabelsFileNotFound as exc:
        raise FileNotFoundError(f"{exc}; name it with --labels") from None
    rows, problems = read_labels_file(labels_path)
    good: list[tuple[bytes, str, str]] = []
    for row in _with_progress(rows, progress, labels_path.name):
        image_path = (images_dir / row.image).resolve()
        if not image_path.is_relative_to(images_dir):
            problems.append(LabelProblem(row.line, f"image path {row.image!r} points outside {images_dir}"))
            continue
        if not image_path.is_file():
            problems.append(LabelProblem(row.line, f"image file {row.image!r} not found"))
            continue
        data = image_path.read_bytes()
        try:
            decode_image(data)
        except ImageDecodeError as exc:
            problems.append(LabelProblem(row.line, f"image {row.image!r}: {exc}"))
            continue
        good.append((data, row.image, row.text))
    problems.sort(key=lambda p: p.line)
    report = BuildReport(output=None, problems=problems)
    if (problems and not skip_bad) or not good:
        return report
    report.output = write_image_parquet(good, output)
    report.rows_written = len(good)
    return report


def _with_progress(rows: list, enabled: bool, label: str) -> Iterable:
    if not enabled or len(rows) < 200:
        return rows
    from tqdm import tqdm

    return tqdm(rows, desc=f"checking {label}", unit="row")
