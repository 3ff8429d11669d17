"""Dataset URIs -> a local path: local roots checked, hub/S3/HTTPS downloaded, archives unpacked safely.

``check_uri_allowed`` runs the checks that need no network (at submit time, so a bad
URI is a 422); ``fetch`` does the rest in the worker. http(s) URIs go through
``ocrtune_shared.fetch``: every hop resolved once, checked, and fetched from that address.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path, PurePosixPath

from ocrtune_shared.archives import ArchiveError, is_archive, safe_extract
from ocrtune_shared.errors import ErrorCode
from ocrtune_shared.fetch import FetchError, FetchFailure, FetchPolicy, check_url, fetch_into, resolve_checked
from ocrtune_trainer.datasets.rows import DatasetError
from ocrtune_trainer.settings import TrainerSettings

# What the operator's OCRTUNE_TRAINER_S3_ENDPOINT_URL may point at (see _fetch_fsspec).
S3_ENDPOINT_POLICY = FetchPolicy(schemes=frozenset({"http", "https"}), allow_private=True)


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
    if resolved.is_relative_to(settings.uploads_dir.resolve()):
        return resolved  # the trainer's own copy of a dataset uploaded through POST /datasets
    roots = [root.resolve() for root in settings.data_roots]
    if not roots:
        raise DatasetError(
            ErrorCode.uri_not_allowed,
            "local paths are disabled: the trainer has no data roots (set OCRTUNE_TRAINER_DATA_ROOTS);"
            " upload a file with POST /datasets instead",
            uri,
        )
    if not any(resolved.is_relative_to(root) for root in roots):
        raise DatasetError(
            ErrorCode.uri_not_allowed,
            f"{resolved} is outside the allowed data roots ({', '.join(map(str, roots))})",
            uri,
        )
    return resolved


def fetch_policy(settings: TrainerSettings) -> FetchPolicy:
    """What an http(s) dataset URI may reach: public addresses, private ones only when the operator allows them."""
    return FetchPolicy(
        schemes=frozenset({"http", "https"}),
        allow_private=settings.allow_private_urls,
        allow_private_setting="OCRTUNE_TRAINER_ALLOW_PRIVATE_URLS",
        timeout_s=30.0,
        connect_timeout_s=10.0,
    )


def dataset_error(exc: FetchError, uri: str) -> DatasetError:
    """The trainer's error for a failed fetch: a refused URL is ``uri_not_allowed``, a body too big ``dataset_invalid``."""
    code = {
        FetchFailure.refused: ErrorCode.uri_not_allowed,
        FetchFailure.too_large: ErrorCode.dataset_invalid,
    }.get(exc.failure, ErrorCode.dataset_unreachable)
    return DatasetError(code, exc.message, uri)


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
        try:
            check_url(uri, fetch_policy(settings))  # names are resolved by the worker, when it fetches
        except FetchError as exc:
            raise dataset_error(exc, uri) from None
    else:
        raise DatasetError(ErrorCode.uri_not_allowed, f"scheme {scheme!r} is not supported", uri)


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
    target = workdir / "downloads" / _file_name_from_url(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(target, "wb") as handle:
            fetch_into(
                uri, handle, policy=fetch_policy(settings), max_bytes=settings.max_download_bytes, where="the download"
            )
    except FetchError as exc:
        target.unlink(missing_ok=True)
        raise dataset_error(exc, uri) from None
    return target


def _fetch_fsspec(uri: str, workdir: Path, settings: TrainerSettings) -> Path:
    import fsspec

    scheme = uri_scheme(uri)
    options: dict = {}
    if scheme == "s3" and settings.s3_endpoint_url:
        options["client_kwargs"] = {"endpoint_url": settings.s3_endpoint_url}
        # The operator's own endpoint, not the user's, so private networks are fine; a metadata or
        # link-local address still is not. botocore connects by itself: this checks, it cannot pin.
        try:
            resolve_checked(settings.s3_endpoint_url, S3_ENDPOINT_POLICY)
        except FetchError as exc:
            raise dataset_error(exc, uri) from None
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


def extract_archive(archive: Path, target: Path, settings: TrainerSettings) -> Path:
    """Unpack ``archive`` into ``target`` after checking every member; return the dataset folder inside."""
    try:
        return safe_extract(archive, target, max_bytes=settings.max_extract_bytes)
    except ArchiveError as exc:
        raise DatasetError(ErrorCode.dataset_invalid, str(exc), archive.name) from None
