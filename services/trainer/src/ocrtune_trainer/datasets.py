"""Dataset URIs -> rows of (image bytes, text), whatever layout the user brings.

Two steps: ``fetch`` makes the URI a local path (local roots checked, hub/S3/HTTPS
downloaded, archives unpacked safely), then ``read_rows`` reads that path in its
format (parquet, JSONL/CSV manifest, image folder + labels file, ``save_to_disk``).
Every problem is a ``DatasetError`` that names the file and row it was found at.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import os
import shutil
import socket
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ocrtune_shared.archives import ArchiveError, is_archive, safe_extract
from ocrtune_shared.errors import ErrorCode
from ocrtune_shared.finetune import DatasetFormat, DatasetSpec
from ocrtune_shared.labels import LABEL_FILE_SUFFIXES, parse_labels
from ocrtune_trainer.settings import TrainerSettings

HF_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
# Cloud metadata endpoints that are not link-local (AWS IPv6, Alibaba); link-local is refused wholesale.
METADATA_ADDRESSES = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
MAX_REDIRECTS = 5


class DatasetError(Exception):
    """A dataset that cannot be used; ``where`` names the URI, file or row."""

    def __init__(self, code: ErrorCode, message: str, where: str | None = None) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.code = code
        self.message = message
        self.where = where


@dataclass
class DatasetRow:
    image: bytes | None
    text: str
    where: str
    """Where the row came from, for messages: 'train.parquet row 3', 'labels.tsv line 7'."""
    image_name: str | None = None


@dataclass
class RowProblem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class RawDataset:
    rows: list[DatasetRow]
    problems: list[RowProblem] = field(default_factory=list)
    source: str = ""


# --------------------------------------------------------------------------- URI checks


def uri_scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def local_path_of(uri: str) -> Path:
    if uri_scheme(uri) == "file":
        parsed = urllib.parse.urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise DatasetError(ErrorCode.uri_not_allowed, "file:// URIs must not name a host", uri)
        return Path(urllib.parse.unquote(parsed.path))
    return Path(uri)


def check_local_allowed(path: Path, settings: TrainerSettings, uri: str) -> Path:
    """The resolved ``path`` if it lies under one of the configured data roots."""
    if not path.is_absolute():
        raise DatasetError(ErrorCode.uri_not_allowed, "local dataset paths must be absolute", uri)
    resolved = path.resolve()
    roots = [root.resolve() for root in settings.data_roots]
    if not roots:
        raise DatasetError(
            ErrorCode.uri_not_allowed,
            "local paths are disabled: the trainer has no data roots (set OCRTUNE_TRAINER_DATA_ROOTS)",
            uri,
        )
    if not any(resolved.is_relative_to(root) for root in roots):
        raise DatasetError(
            ErrorCode.uri_not_allowed,
            f"{resolved} is outside the allowed data roots ({', '.join(map(str, roots))})",
            uri,
        )
    return resolved


def check_address_allowed(address: str, uri: str) -> None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    for candidate in (ip, mapped):
        if candidate is not None and (candidate.is_link_local or candidate in METADATA_ADDRESSES):
            raise DatasetError(
                ErrorCode.uri_not_allowed,
                f"refusing to fetch from {address}: link-local and cloud metadata addresses are not allowed",
                uri,
            )


def check_host_allowed(host: str, uri: str, *, resolve: bool = True) -> None:
    """Refuse hosts that are, or resolve to, link-local/metadata addresses."""
    host = host.strip("[]")
    try:
        check_address_allowed(host, uri)
        return
    except ValueError:
        pass  # not an IP literal: a name
    if not resolve:
        return
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise DatasetError(
            ErrorCode.dataset_unreachable, f"cannot resolve host {host!r} ({exc.strerror})", uri
        ) from None
    for info in infos:
        check_address_allowed(str(info[4][0]), uri)


def check_uri_allowed(uri: str, settings: TrainerSettings) -> None:
    """The checks that need no network: run at submit time so a bad URI is a 422."""
    scheme = uri_scheme(uri)
    if scheme in ("", "file"):
        check_local_allowed(local_path_of(uri), settings, uri)
    elif scheme == "hf":
        _parse_hf(uri)
    elif scheme == "s3":
        if not urllib.parse.urlparse(uri).netloc:
            raise DatasetError(ErrorCode.uri_not_allowed, "s3:// URIs need a bucket: s3://bucket/key", uri)
    elif scheme in ("http", "https"):
        host = urllib.parse.urlparse(uri).hostname
        if not host:
            raise DatasetError(ErrorCode.uri_not_allowed, "the URL has no host", uri)
        check_host_allowed(host, uri, resolve=False)
    else:
        raise DatasetError(ErrorCode.uri_not_allowed, f"scheme {scheme!r} is not supported", uri)


# --------------------------------------------------------------------------- fetching


def fetch(uri: str, workdir: Path, settings: TrainerSettings) -> Path:
    """A local path holding the dataset ``uri`` names (downloaded and unpacked as needed)."""
    workdir.mkdir(parents=True, exist_ok=True)
    scheme = uri_scheme(uri)
    if scheme in ("", "file"):
        path = check_local_allowed(local_path_of(uri), settings, uri)
        if not path.exists():
            raise DatasetError(ErrorCode.dataset_unreachable, f"{path} does not exist (404)", uri)
    elif scheme == "hf":
        path = _fetch_hf(uri, workdir)
    elif scheme in ("http", "https"):
        path = _fetch_http(uri, workdir, settings)
    else:
        path = _fetch_fsspec(uri, workdir, settings)
    if path.is_file() and is_archive(path):
        path = extract_archive(path, workdir / f"unpacked-{len(list(workdir.glob('unpacked-*')))}", settings)
    return path


def _parse_hf(uri: str) -> tuple[str, str | None]:
    rest = uri.split("://", 1)[1]
    parts = [p for p in rest.split("/") if p]
    if len(parts) < 3 or parts[0] != "datasets":
        raise DatasetError(
            ErrorCode.uri_not_allowed, "hub URIs look like hf://datasets/<owner>/<name>[/<file or folder>]", uri
        )
    if any(p in ("..", ".") for p in parts):
        raise DatasetError(ErrorCode.uri_not_allowed, "hub URIs must not contain '..'", uri)
    return f"{parts[1]}/{parts[2]}", "/".join(parts[3:]) or None


def _fetch_hf(uri: str, workdir: Path) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id, inner = _parse_hf(uri)
    patterns = [inner, f"{inner}/*", f"{inner}/**"] if inner else None
    try:
        snapshot = Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=patterns))
    except LocalEntryNotFoundError as exc:  # a subclass of EntryNotFoundError: test it first
        raise DatasetError(
            ErrorCode.dataset_unreachable,
            f"dataset repo {repo_id!r} is not in the local hub cache and the hub cannot be reached (offline)",
            uri,
        ) from exc
    except GatedRepoError as exc:
        raise DatasetError(ErrorCode.dataset_unreachable, f"dataset repo {repo_id!r} is gated: {exc}", uri) from exc
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        raise DatasetError(
            ErrorCode.dataset_unreachable, f"dataset repo {repo_id!r} not found on the hub (404)", uri
        ) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise DatasetError(
            ErrorCode.dataset_unreachable, f"cannot download {repo_id!r} from the hub: {exc}", uri
        ) from exc
    path = snapshot / inner if inner else snapshot
    if not path.exists():
        raise DatasetError(ErrorCode.dataset_unreachable, f"{inner!r} is not in dataset repo {repo_id!r} (404)", uri)
    return path


def _file_name_from_url(uri: str, default: str = "download") -> str:
    name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(uri).path)).name
    safe = "".join(c for c in name if c.isalnum() or c in "._-")
    return safe.lstrip(".") or default


def _fetch_http(uri: str, workdir: Path, settings: TrainerSettings) -> Path:
    import httpx

    target = workdir / "downloads" / _file_name_from_url(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    url = uri
    with httpx.Client(follow_redirects=False, timeout=httpx.Timeout(30.0, connect=10.0)) as client:
        for _ in range(MAX_REDIRECTS + 1):
            parsed = urllib.parse.urlparse(url)
            # Checked on every hop: a redirect to 169.254.169.254 is the classic way round a one-time check.
            check_host_allowed(parsed.hostname or "", uri)
            try:
                with client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = urllib.parse.urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code == 404:
                        raise DatasetError(ErrorCode.dataset_unreachable, f"{url} answered 404 Not Found", uri)
                    if response.status_code >= 400:
                        raise DatasetError(
                            ErrorCode.dataset_unreachable, f"{url} answered HTTP {response.status_code}", uri
                        )
                    written = 0
                    with open(target, "wb") as handle:
                        for chunk in response.iter_bytes(1 << 20):
                            written += len(chunk)
                            if written > settings.max_download_bytes:
                                raise DatasetError(
                                    ErrorCode.dataset_invalid,
                                    f"download is larger than the limit of {settings.max_download_bytes} bytes",
                                    uri,
                                )
                            handle.write(chunk)
                    return target
            except httpx.HTTPError as exc:
                raise DatasetError(
                    ErrorCode.dataset_unreachable, f"cannot reach {parsed.netloc}: {exc or type(exc).__name__}", uri
                ) from exc
    raise DatasetError(ErrorCode.dataset_unreachable, f"more than {MAX_REDIRECTS} redirects", uri)


def _fetch_fsspec(uri: str, workdir: Path, settings: TrainerSettings) -> Path:
    import fsspec

    scheme = uri_scheme(uri)
    options: dict = {}
    if scheme == "s3" and settings.s3_endpoint_url:
        options["client_kwargs"] = {"endpoint_url": settings.s3_endpoint_url}
        check_host_allowed(urllib.parse.urlparse(settings.s3_endpoint_url).hostname or "", uri)
    target_root = workdir / "downloads"
    target_root.mkdir(parents=True, exist_ok=True)
    try:
        fs, path = fsspec.core.url_to_fs(uri, **options)
        if not fs.exists(path):
            raise DatasetError(ErrorCode.dataset_unreachable, f"{uri} does not exist (404)", uri)
        if fs.isdir(path):
            target = target_root / (PurePosixPath(path).name or "dataset")
            total = sum(info.get("size", 0) or 0 for info in fs.find(path, detail=True).values())
            if total > settings.max_download_bytes:
                raise DatasetError(
                    ErrorCode.dataset_invalid,
                    f"folder holds {total} bytes, above the limit of {settings.max_download_bytes}",
                    uri,
                )
            fs.get(path.rstrip("/") + "/", str(target), recursive=True)
        else:
            size = fs.size(path) or 0
            if size > settings.max_download_bytes:
                raise DatasetError(
                    ErrorCode.dataset_invalid,
                    f"file is {size} bytes, above the limit of {settings.max_download_bytes}",
                    uri,
                )
            target = target_root / (_file_name_from_url(uri))
            fs.get(path, str(target))
        return target
    except DatasetError:
        raise
    except FileNotFoundError as exc:
        raise DatasetError(ErrorCode.dataset_unreachable, f"{uri} does not exist (404)", uri) from exc
    except PermissionError as exc:
        raise DatasetError(ErrorCode.dataset_unreachable, f"access denied: {exc}", uri) from exc
    except Exception as exc:  # botocore/aiohttp raise many unrelated types for "cannot connect"
        raise DatasetError(
            ErrorCode.dataset_unreachable, f"cannot read {uri}: {type(exc).__name__}: {exc}", uri
        ) from exc


# --------------------------------------------------------------------------- archives


def extract_archive(archive: Path, target: Path, settings: TrainerSettings) -> Path:
    """Unpack ``archive`` into ``target`` after checking every member; return the dataset folder inside."""
    try:
        return safe_extract(archive, target, max_bytes=settings.max_extract_bytes)
    except ArchiveError as exc:
        raise DatasetError(ErrorCode.dataset_invalid, str(exc), archive.name) from None


# --------------------------------------------------------------------------- reading


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
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    preferred = [p for p in found if p.stem.lower() in {"labels", "label", "manifest", "metadata", "gt", "train"}]
    found = preferred or found
    if len(found) != 1:
        raise DatasetError(
            ErrorCode.dataset_invalid,
            f"expected one {'/'.join(suffixes)} file in the folder, found {[p.name for p in found] or 'none'}",
            path.name,
        )
    return found[0]


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


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if path.exists() and not path.is_dir():
        os.unlink(path)
