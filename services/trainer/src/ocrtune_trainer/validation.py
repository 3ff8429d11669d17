"""Validation: everything that can fail about a job's inputs fails here, before training.

Reads every row the job will use, decodes each image through the shared safe
decoder, checks each text, splits off the eval rows, and writes the clean rows to
the job's work folder (``train.parquet`` / ``eval.parquet``) so that training reads
exactly what was validated. Also checks that the base model's config loads and that
the requested LoRA target modules exist in its language model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
from dataclasses import dataclass
from pathlib import Path

from ocrtune_shared.errors import ErrorCode
from ocrtune_shared.finetune import DatasetSpec, FinetuneRequest
from ocrtune_shared.images import ImageDecodeError, decode_image
from ocrtune_trainer.datasets import DatasetError, DatasetRow, RawDataset, RowProblem, fetch, read_rows
from ocrtune_trainer.settings import TrainerSettings

MAX_LISTED_PROBLEMS = 5


@dataclass(frozen=True)
class PreparedData:
    train_rows: int
    eval_rows: int
    eval_from_train: bool
    """One row only: it is also the eval row."""


def load_spec(spec: DatasetSpec, workdir: Path, settings: TrainerSettings) -> RawDataset:
    local = fetch(spec.uri, workdir, settings)
    return read_rows(local, spec, spec.max_samples or settings.max_rows)


def check_rows(raw: RawDataset, label: str) -> list[DatasetRow]:
    """The rows, every one decoded and with text, or a ``DatasetError`` listing the bad ones."""
    problems = list(raw.problems)
    bad = {p.where for p in problems}
    for row in raw.rows:
        if row.where in bad:
            continue
        if not row.text.strip():
            problems.append(_problem(row, "empty text"))
            continue
        if row.image is None:
            problems.append(_problem(row, "no image"))
            continue
        try:
            decode_image(row.image)
        except ImageDecodeError as exc:
            problems.append(_problem(row, f"image {row.image_name + ' ' if row.image_name else ''}is unusable: {exc}"))
    if problems:
        listed = "; ".join(str(p) for p in problems[:MAX_LISTED_PROBLEMS])
        more = f" (and {len(problems) - MAX_LISTED_PROBLEMS} more)" if len(problems) > MAX_LISTED_PROBLEMS else ""
        raise DatasetError(
            ErrorCode.dataset_invalid,
            f"{label} dataset: {len(problems)} unusable row(s) of {_row_count(raw)}: {listed}{more}",
            problems[0].where,
        )
    if not raw.rows:
        raise DatasetError(ErrorCode.dataset_invalid, f"{label} dataset has no rows", raw.source or None)
    return raw.rows


def _problem(row: DatasetRow, message: str) -> RowProblem:
    return RowProblem(row.where, message)


def _row_count(raw: RawDataset) -> int:
    # Rows the reader dropped (a labels line with no text) have a problem but no row.
    return len({r.where for r in raw.rows} | {p.where for p in raw.problems})


def fingerprint(rows: list[DatasetRow]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(hashlib.sha256(row.image or b"").digest())
        digest.update(row.text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def write_rows(rows: list[DatasetRow], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "image": [row.image for row in rows],
            "text": [row.text for row in rows],
            "where": [row.where for row in rows],
        }
    )
    pq.write_table(table, path)
    return path


def read_prepared(path: Path) -> list[DatasetRow]:
    import pyarrow.parquet as pq

    table = pq.read_table(path).to_pydict()
    return [
        DatasetRow(image, text, where)
        for image, text, where in zip(table["image"], table["text"], table["where"], strict=True)
    ]


def prepare(request: FinetuneRequest, workdir: Path, settings: TrainerSettings) -> PreparedData:
    """Fetch, read and check the train (and eval) data; write the clean rows to ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    train = check_rows(load_spec(request.train, workdir / "train-source", settings), "train")
    if request.eval is not None:
        evaluation = check_rows(load_spec(request.eval, workdir / "eval-source", settings), "eval")
        eval_from_train = False
    elif len(train) == 1:
        evaluation, eval_from_train = list(train), True
    else:
        order = list(range(len(train)))
        random.Random(request.hyperparameters.seed).shuffle(order)
        n_eval = min(max(1, round(len(train) * request.eval_fraction)), len(train) - 1)
        held = set(order[:n_eval])
        evaluation = [train[i] for i in sorted(held)]
        train = [row for i, row in enumerate(train) if i not in held]
        eval_from_train = False
    evaluation = evaluation[: request.max_eval_samples]
    write_rows(train, workdir / "train.parquet")
    write_rows(evaluation, workdir / "eval.parquet")
    return PreparedData(train_rows=len(train), eval_rows=len(evaluation), eval_from_train=eval_from_train)


def check_base_model(request: FinetuneRequest, base_model: str) -> str:
    """The base model's family name, after checking the LoRA targets exist and it can be trained here.

    Builds the model on the meta device (no weights, no memory) to list its modules.
    """
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    try:
        config = AutoConfig.from_pretrained(base_model)
    except Exception as exc:
        raise DatasetError(
            ErrorCode.invalid_request, f"base model {base_model!r} cannot be loaded: {exc}", "base_model"
        ) from exc
    with torch.device("meta"):
        try:
            model = AutoModelForImageTextToText.from_config(config)
        except Exception as exc:
            raise DatasetError(
                ErrorCode.invalid_request,
                f"base model {base_model!r} ({config.model_type}) is not an image-text-to-text model: {exc}",
                "base_model",
            ) from exc
    from ocrtune_trainer.families import training_family_for

    try:
        family = training_family_for(model)
    except LookupError as exc:
        raise DatasetError(ErrorCode.invalid_request, f"base model {base_model!r}: {exc}", "base_model") from None
    family.check_targets(model, request.hyperparameters.target_modules)
    return family.family.name


def check_request(request: FinetuneRequest, settings: TrainerSettings) -> None:
    """Submit-time checks that need no network or model: raise ``ServiceError`` 422 on failure."""
    from ocrtune_shared.errors import ServiceError
    from ocrtune_trainer.datasets import check_uri_allowed

    for field_name, spec in (("train", request.train), ("eval", request.eval)):
        if spec is None:
            continue
        try:
            check_uri_allowed(spec.uri, settings)
        except DatasetError as exc:
            raise ServiceError(422, exc.code, exc.message, f"{field_name}.uri") from None
        except (ValueError, OSError) as exc:  # e.g. a NUL byte in a path, a malformed URL
            raise ServiceError(
                422, ErrorCode.invalid_request, f"unusable dataset URI: {exc}", f"{field_name}.uri"
            ) from None
    hp = request.hyperparameters
    for target in hp.report_to:
        if importlib.util.find_spec(target) is None:
            raise ServiceError(
                422, ErrorCode.invalid_request, f"report_to {target!r}: the {target} package is not installed here",
                "hyperparameters.report_to",
            )
    if hp.per_device_batch_size * hp.gradient_accumulation_steps > 65536:
        raise ServiceError(
            422, ErrorCode.invalid_request, "batch size x gradient accumulation is above 65536", "hyperparameters"
        )
