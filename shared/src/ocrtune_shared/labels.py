"""Labels files: the user's ``image path -> text`` list beside a folder of images.

Read by the dataset-builder CLI and by the trainer (image-folder datasets), so it
lives here once. Accepts TSV/TXT (``path<TAB>text``, or ``path text`` split at
the first whitespace), CSV (``image,text`` with or without a header) and JSONL
(``{"image": ..., "text": ...}``; ``image_path`` or ``file`` also accepted).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

LABEL_FILE_SUFFIXES = (".tsv", ".txt", ".csv", ".jsonl")
# Names that mark "the" labels file when a folder holds several candidates.
PREFERRED_STEMS = frozenset({"labels", "label", "gt", "annotations", "metadata", "manifest", "train"})
_PATH_KEYS = ("image", "image_path", "file", "path", "file_name")


@dataclass(frozen=True)
class LabelRow:
    line: int
    """1-based line number in the labels file."""
    image: str
    text: str


@dataclass(frozen=True)
class LabelProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class LabelsFileNotFound(FileNotFoundError):
    """A folder without exactly one labels file; ``candidates`` names what was there."""

    def __init__(self, folder: Path, suffixes: tuple[str, ...], candidates: list[str]) -> None:
        super().__init__(f"expected one labels file ({', '.join(suffixes)}) in {folder}, found {candidates or 'none'}")
        self.candidates = candidates


def find_labels_file(folder: Path, suffixes: tuple[str, ...] = LABEL_FILE_SUFFIXES) -> Path:
    """The one file in ``folder`` with one of ``suffixes``, a preferred name winning among several."""
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    found = [p for p in found if p.stem.lower() in PREFERRED_STEMS] or found
    if len(found) != 1:
        raise LabelsFileNotFound(folder, suffixes, [p.name for p in found])
    return found[0]


def parse_labels(content: str, suffix: str) -> tuple[list[LabelRow], list[LabelProblem]]:
    """Parse labels text; return good rows and one problem per bad line (never raises on content)."""
    suffix = suffix.lower()
    if suffix == ".jsonl":
        return _parse_jsonl(content)
    if suffix == ".csv":
        return _parse_csv(content)
    return _parse_tsv(content)


def read_labels_file(path: str | Path) -> tuple[list[LabelRow], list[LabelProblem]]:
    path = Path(path)
    return parse_labels(path.read_text(encoding="utf-8-sig"), path.suffix)


def _row(line: int, image: str, text: str, rows: list[LabelRow], problems: list[LabelProblem]) -> None:
    image, text = image.strip(), text.strip()
    if not image:
        problems.append(LabelProblem(line, "missing image path"))
    elif not text:
        problems.append(LabelProblem(line, f"empty text for image {image!r}"))
    else:
        rows.append(LabelRow(line, image, text))


def _parse_tsv(content: str) -> tuple[list[LabelRow], list[LabelProblem]]:
    rows: list[LabelRow] = []
    problems: list[LabelProblem] = []
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if "\t" in raw:
            image, _, text = raw.partition("\t")
        else:
            parts = raw.strip().split(maxsplit=1)
            image, text = parts[0], parts[1] if len(parts) > 1 else ""
        _row(number, image, text, rows, problems)
    return rows, problems


def _parse_csv(content: str) -> tuple[list[LabelRow], list[LabelProblem]]:
    rows: list[LabelRow] = []
    problems: list[LabelProblem] = []
    reader = csv.reader(io.StringIO(content))
    image_col, text_col = 0, 1
    for number, record in enumerate(reader, start=1):
        if not record or not any(cell.strip() for cell in record):
            continue
        lowered = [cell.strip().lower() for cell in record]
        if number == 1 and "text" in lowered and any(k in lowered for k in _PATH_KEYS):
            image_col = next(lowered.index(k) for k in _PATH_KEYS if k in lowered)
            text_col = lowered.index("text")
            continue
        if len(record) <= max(image_col, text_col):
            problems.append(LabelProblem(number, f"expected at least {max(image_col, text_col) + 1} columns"))
            continue
        _row(number, record[image_col], record[text_col], rows, problems)
    return rows, problems


def _parse_jsonl(content: str) -> tuple[list[LabelRow], list[LabelProblem]]:
    rows: list[LabelRow] = []
    problems: list[LabelProblem] = []
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(LabelProblem(number, f"not valid JSON ({exc.msg})"))
            continue
        if not isinstance(record, dict):
            problems.append(LabelProblem(number, "expected a JSON object"))
            continue
        image = next((record[k] for k in _PATH_KEYS if isinstance(record.get(k), str)), "")
        text = record.get("text")
        if not isinstance(text, str):
            problems.append(LabelProblem(number, "missing 'text' string"))
            continue
        _row(number, image, text, rows, problems)
    return rows, problems
