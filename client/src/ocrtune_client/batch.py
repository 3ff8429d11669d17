"""OCR of many files: which files the arguments name, where each text goes, and the run itself.

``ocrtune ocr scans/ 'more/**/*.pdf' page.png -o texts/`` reads every image and PDF
that the arguments name and writes one text per file under ``texts/``, mirroring the
names below the folder or the glob's fixed part (``scans/a/1.png`` -> ``texts/a/1.txt``).
A file the service refuses does not stop the others: it is reported at the end.
"""

from __future__ import annotations

import glob
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ocrtune_client.client import OCRTuneClient
from ocrtune_client.errors import OCRTuneError
from ocrtune_shared.ocr import OCROptions, OCRResponse

DOCUMENT_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".pdf"})
"""What a folder or a glob contributes; a file named on its own is sent whatever its name."""
GLOB_CHARS = frozenset("*?[")


class InputError(ValueError):
    """An argument that names no file, or two files that would write the same output."""


@dataclass(frozen=True)
class BatchItem:
    source: Path
    name: Path
    """The source's path below what named it (the folder, the glob's fixed part), for mirroring."""


def _is_document(path: Path) -> bool:
    # Symlinks count even when broken: a broken one is a file the user will want reported, not skipped.
    return path.suffix.lower() in DOCUMENT_SUFFIXES and (path.is_file() or path.is_symlink())


def _folder_items(folder: Path) -> list[BatchItem]:
    return [BatchItem(p, p.relative_to(folder)) for p in sorted(folder.rglob("*")) if _is_document(p)]


def _glob_base(pattern: str) -> Path:
    """The part of ``pattern`` before its first wildcard: what matches are named relative to."""
    fixed: list[str] = []
    for part in Path(pattern).parts:
        if GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path()


def collect_inputs(arguments: Sequence[str]) -> list[BatchItem]:
    """Every file the arguments name: files as given, folders walked, globs expanded (``**`` too)."""
    items: list[BatchItem] = []
    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir():
            found = _folder_items(path)
            if not found:
                raise InputError(f"no image or PDF in folder {argument}")
            items += found
        elif path.is_file():
            items.append(BatchItem(path, Path(path.name)))
        elif GLOB_CHARS & set(argument):
            base = _glob_base(str(path))
            matches = []
            for match in sorted(glob.glob(str(path), recursive=True)):
                found_path = Path(match)
                if found_path.is_dir():
                    matches += [BatchItem(i.source, found_path.relative_to(base) / i.name)
                                for i in _folder_items(found_path)]
                elif _is_document(found_path):
                    matches.append(BatchItem(found_path, found_path.relative_to(base)))
            if not matches:
                raise InputError(f"no image or PDF matches {argument}")
            items += matches
        else:
            raise InputError(f"no such file or folder: {argument}")
    unique: dict[Path, BatchItem] = {}
    for item in items:  # a file named twice (a folder and a glob over it) is read once
        unique.setdefault(item.source.absolute(), item)
    return list(unique.values())


def output_paths(items: Sequence[BatchItem], out_dir: Path, suffix: str) -> dict[Path, Path]:
    """Each source's output file under ``out_dir``; ``InputError`` when two would be the same file."""
    outputs: dict[Path, Path] = {}
    writers: dict[Path, Path] = {}
    for item in items:
        target = out_dir / item.name.with_suffix(suffix)
        if target in writers:
            raise InputError(f"{writers[target]} and {item.source} would both be written to {target}")
        writers[target] = item.source
        outputs[item.source] = target
    return outputs


@dataclass
class BatchFailure:
    source: Path
    message: str


@dataclass
class BatchReport:
    written: list[Path] = field(default_factory=list)
    failures: list[BatchFailure] = field(default_factory=list)


def _message(exc: Exception) -> str:
    if isinstance(exc, OCRTuneError):
        where = f" ({exc.body.where})" if exc.body.where and exc.body.where != "file" else ""
        status = f" [HTTP {exc.status} {exc.code.value}]" if exc.status else ""
        return f"{exc.message}{where}{status}"
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    return str(exc)


def _service_is_down(exc: OCRTuneError) -> bool:
    # Nothing listens: every other file would fail the same way, so the batch stops. A timeout
    # (one huge PDF) or an error answer is about that file alone.
    return exc.status is None and isinstance(exc.__cause__, httpx.ConnectError)


def _write(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, target)  # an interrupted run leaves no half-written text under the right name


def run_batch(
    client: OCRTuneClient,
    items: Sequence[BatchItem],
    outputs: dict[Path, Path],
    *,
    adapter: str | None,
    options: OCROptions,
    concurrency: int,
    as_json: bool = False,
    on_done: Callable[[BatchItem, BatchFailure | None], None] | None = None,
) -> BatchReport:
    """OCR every item, up to ``concurrency`` at once, writing each answer to ``outputs[item.source]``.

    The text written is the service's ``text`` (a PDF's pages joined by form feeds, as the
    service joins them), or the whole ``OCRResponse`` as JSON. ``on_done`` is called after
    each file (from this thread). A service that cannot be reached raises ``OCRTuneError``.
    """
    report = BatchReport()
    lock = threading.Lock()

    def read_one(item: BatchItem) -> None:
        response: OCRResponse = client.ocr(item.source, adapter=adapter, options=options)
        body = response.model_dump_json(indent=2) + "\n" if as_json else response.text
        _write(outputs[item.source], body)
        with lock:
            report.written.append(outputs[item.source])

    pending = list(items)
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        running: dict[Future[None], BatchItem] = {}
        try:
            while pending or running:
                while pending and len(running) < concurrency:  # submitted as slots free: a stop stops at once
                    item = pending.pop(0)
                    running[pool.submit(read_one, item)] = item
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    item = running.pop(future)
                    failure = None
                    try:
                        future.result()
                    except OCRTuneError as exc:
                        if _service_is_down(exc):
                            raise
                        failure = BatchFailure(item.source, _message(exc))
                    except (OSError, ValueError) as exc:
                        failure = BatchFailure(item.source, _message(exc))
                    if failure is not None:
                        report.failures.append(failure)
                    if on_done is not None:
                        on_done(item, failure)
        except BaseException:
            pending.clear()
            for future in running:
                future.cancel()
            raise
    order = {item.source: index for index, item in enumerate(items)}
    report.failures.sort(key=lambda f: order[f.source])
    return report
