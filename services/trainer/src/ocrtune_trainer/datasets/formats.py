"""A local dataset path -> rows, in its format: parquet, JSONL/CSV manifest, image folder + labels file, ``save_to_disk``.

``detect_format`` tells the format from the files when the request says ``auto``.
A bad row is a ``RowProblem`` (validation decides what to do with it); a bad file is a
``DatasetError``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from ocrtune_shared.errors import ErrorCode
from ocrtune_shared.finetune import DatasetFormat, DatasetSpec
from ocrtune_shared.labels import LABEL_FILE_SUFFIXES, LabelsFileNotFound, find_labels_file, parse_labels
from ocrtune_trainer.datasets.rows import DatasetError, DatasetRow, RawDataset, RowProblem

HF_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


def detect_format(path: Path) -> DatasetFormat:
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            return DatasetFormat.parquet
        if suffix in (".jsonl", ".json"):
            return DatasetFormat.jsonl
        if suffix == ".csv":
            return DatasetFormat.csv
        if suffix in (".tsv", ".txt"):
            return DatasetFormat.image_folder
        with open(path, "rb") as handle:
            if handle.read(4) == b"PAR1":
                return DatasetFormat.parquet
        raise DatasetError(
            ErrorCode.dataset_invalid,
            "cannot tell the dataset format from the file (expected .parquet, .jsonl, .csv, a labels .tsv, or an archive)",
            path.name,
        )
    if any((path / marker).is_file() for marker in HF_DISK_MARKERS):
        return DatasetFormat.hf_disk
    if any(path.rglob("*.parquet")):
        return DatasetFormat.parquet
    label_files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in LABEL_FILE_SUFFIXES]
    if any(p.suffix.lower() in (".tsv", ".txt") for p in label_files):
        return DatasetFormat.image_folder
    if any(p.suffix.lower() == ".jsonl" for p in label_files):
        return DatasetFormat.jsonl
    if any(p.suffix.lower() == ".csv" for p in label_files):
        return DatasetFormat.csv
    raise DatasetError(
        ErrorCode.dataset_invalid,
        "no dataset found in the folder: expected parquet files, a save_to_disk folder, "
        "or images with a labels file (.tsv/.txt/.csv/.jsonl)",
        path.name,
    )


def read_rows(path: Path, spec: DatasetSpec, limit: int) -> RawDataset:
    """Read up to ``limit`` rows of the dataset at ``path`` in ``spec.format`` (detected when auto)."""
    fmt = spec.format if spec.format is not DatasetFormat.auto else detect_format(path)
    if fmt is DatasetFormat.parquet:
        return _read_parquet(path, spec, limit)
    if fmt is DatasetFormat.hf_disk:
        return _read_hf_disk(path, spec, limit)
    if fmt in (DatasetFormat.jsonl, DatasetFormat.csv):
        return _read_manifest(
            _single_file(path, (".jsonl", ".json") if fmt is DatasetFormat.jsonl else (".csv",)), spec, limit
        )
    return _read_labels_folder(path, spec, limit)


def _single_file(path: Path, suffixes: tuple[str, ...]) -> Path:
    if path.is_file():
        return path
    try:
        return find_labels_file(path, suffixes)
    except LabelsFileNotFound as exc:
        raise DatasetError(
            ErrorCode.dataset_invalid,
            f"expected one {'/'.join(suffixes)} file in the folder, found {exc.candidates or 'none'}",
            path.name,
        ) from None


def _split_files(files: list[Path], root: Path, split: str) -> list[Path]:
    def tokens(p: Path) -> set[str]:
        rel = p.relative_to(root) if p.is_relative_to(root) else p
        words: set[str] = set()
        for part in rel.parts:
            stem = part.removesuffix(".parquet")
            words.add(stem)
            words.update(stem.replace("_", "-").split("-"))
        return words

    matching = [f for f in files if split in tokens(f)]
    return matching or files


def _read_parquet(path: Path, spec: DatasetSpec, limit: int) -> RawDataset:
    import pyarrow.parquet as pq

    files = [path] if path.is_file() else _split_files(sorted(path.rglob("*.parquet")), path, spec.split)
    if not files:
        raise DatasetError(ErrorCode.dataset_invalid, "no parquet files found", path.name)
    cols = spec.columns
    image_col = cols.image_path or cols.image
    rows: list[DatasetRow] = []
    problems: list[RowProblem] = []
    for file in files:
        base = file.parent
        try:
            parquet = pq.ParquetFile(file)
        except Exception as exc:
            raise DatasetError(ErrorCode.dataset_invalid, f"not a readable parquet file ({exc})", file.name) from exc
        names = parquet.schema_arrow.names
        for wanted, role in ((image_col, "image"), (cols.text, "text")):
            if wanted not in names:
                raise DatasetError(
                    ErrorCode.dataset_invalid,
                    f"{role} column {wanted!r} is missing; the file has columns {names} "
                    f"(map yours with columns.{'image_path' if role == 'image' and cols.image_path else role})",
                    file.name,
                )
        index = 0
        for batch in parquet.iter_batches(batch_size=256, columns=[image_col, cols.text]):
            for image_value, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                where = f"{file.name} row {index}"
                index += 1
                image, problem = _image_from_value(
                    image_value, base, path if path.is_dir() else base, bool(cols.image_path)
                )
                if problem:
                    problems.append(RowProblem(where, problem))
                rows.append(DatasetRow(image, _text(text), where))
                if len(rows) >= limit:
                    return RawDataset(rows, problems, source=str(path))
    return RawDataset(rows, problems, source=str(path))


def _text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _image_from_value(value: object, base: Path, root: Path, is_path: bool) -> tuple[bytes | None, str | None]:
    """Bytes of an image cell: HF Image struct, raw bytes, or a path relative to the dataset."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"], None
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return (bytes(value), None) if value else (None, "image is empty (0 bytes)")
    if isinstance(value, str) and value:
        return _read_relative(value, base, root)
    return None, "no image in this row" if not is_path else "no image path in this row"


def _read_relative(name: str, base: Path, root: Path) -> tuple[bytes | None, str | None]:
    candidate = (base / name).resolve()
    if not candidate.is_relative_to(root.resolve()):
        return None, f"image path {name!r} points outside the dataset folder"
    if not candidate.is_file():
        return None, f"image file {name!r} not found"
    return candidate.read_bytes(), None


def _read_hf_disk(path: Path, spec: DatasetSpec, limit: int) -> RawDataset:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise DatasetError(ErrorCode.dataset_invalid, f"not a readable save_to_disk folder ({exc})", path.name) from exc
    if isinstance(loaded, datasets.DatasetDict):
        if spec.split not in loaded:
            raise DatasetError(
                ErrorCode.dataset_invalid, f"split {spec.split!r} not found; the dataset has {list(loaded)}", path.name
            )
        loaded = loaded[spec.split]
    cols = spec.columns
    image_col = cols.image_path or cols.image
    for wanted, role in ((image_col, "image"), (cols.text, "text")):
        if wanted not in loaded.column_names:
            raise DatasetError(
                ErrorCode.dataset_invalid,
                f"{role} column {wanted!r} is missing; the dataset has columns {loaded.column_names}",
                path.name,
            )
    loaded = loaded.select_columns([image_col, cols.text]).select(range(min(limit, len(loaded))))
    if isinstance(loaded.features[image_col], datasets.Image):
        # Keep the stored bytes: decoding happens once, in validation, through the safe decoder.
        loaded = loaded.cast_column(image_col, datasets.Image(decode=False))
    rows: list[DatasetRow] = []
    problems: list[RowProblem] = []
    for index, record in enumerate(loaded):
        where = f"{path.name} {spec.split} row {index}"
        image, problem = _image_from_value(record[image_col], path, path, bool(cols.image_path))
        if problem:
            problems.append(RowProblem(where, problem))
        rows.append(DatasetRow(image, _text(record[cols.text]), where))
    return RawDataset(rows, problems, source=str(path))


def _manifest_records(file: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    content = file.read_text(encoding="utf-8-sig")
    if file.suffix.lower() in (".jsonl", ".json"):
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, None, f"not valid JSON ({exc.msg})"
                continue
            yield (number, record, None) if isinstance(record, dict) else (number, None, "expected a JSON object")
    else:
        reader = csv.DictReader(io.StringIO(content))
        for record in reader:
            yield reader.line_num, record, None


def _read_manifest(file: Path, spec: DatasetSpec, limit: int) -> RawDataset:
    cols = spec.columns
    image_col = cols.image_path or cols.image
    rows: list[DatasetRow] = []
    problems: list[RowProblem] = []
    for number, record, problem in _manifest_records(file):
        where = f"{file.name} line {number}"
        if problem or record is None:
            problems.append(RowProblem(where, problem or "unreadable"))
            continue
        for wanted, role in ((image_col, "image path"), (cols.text, "text")):
            if wanted not in record:
                raise DatasetError(
                    ErrorCode.dataset_invalid,
                    f"{role} column {wanted!r} is missing; the row has {sorted(record)}",
                    where,
                )
        value = record[image_col]
        image, problem = (
            (None, "no image path")
            if not isinstance(value, str) or not value.strip()
            else _read_relative(value.strip(), file.parent, file.parent)
        )
        if problem:
            problems.append(RowProblem(where, problem))
        rows.append(
            DatasetRow(image, _text(record[cols.text]), where, image_name=value if isinstance(value, str) else None)
        )
        if len(rows) >= limit:
            break
    return RawDataset(rows, problems, source=str(file))


def _read_labels_folder(path: Path, spec: DatasetSpec, limit: int) -> RawDataset:
    if path.is_file():
        labels, folder = path, path.parent
    else:
        folder = path
        labels = _single_file(path, LABEL_FILE_SUFFIXES)
    parsed, label_problems = parse_labels(labels.read_text(encoding="utf-8-sig"), labels.suffix)
    problems = [RowProblem(f"{labels.name} line {p.line}", p.message) for p in label_problems]
    rows: list[DatasetRow] = []
    for label in parsed:
        where = f"{labels.name} line {label.line}"
        image, problem = _read_relative(label.image, folder, folder)
        if problem:
            problems.append(RowProblem(where, problem))
        rows.append(DatasetRow(image, label.text, where, image_name=label.image))
        if len(rows) >= limit:
            break
    return RawDataset(rows, problems, source=str(labels))
