"""``ocrtune``: the command line over the client and the dataset builder.

Service URLs come from ``--inference-url`` / ``--trainer-url``, else from
``$OCRTUNE_INFERENCE_URL`` / ``$OCRTUNE_TRAINER_URL``, else the default ports on
127.0.0.1. A failed request prints the service's own message and exits 1; a
usage or local file problem exits 2; nothing prints a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ValidationError

from ocrtune_client.cli_ocr import EXIT_SERVICE_ERROR, EXIT_USAGE, client_for, print_json, run_ocr
from ocrtune_client.dataset_builder import build_parquet
from ocrtune_client.errors import OCRTuneError
from ocrtune_client.render import (
    adapters_table,
    describe_result,
    follow_with_progress,
    jobs_table,
)
from ocrtune_shared.finetune import DatasetSpec, FinetuneRequest, HyperParameters
from ocrtune_shared.jobs import JobState
from ocrtune_shared.ocr import OCRTask, ResolutionMode


# --- finetune / jobs -----------------------------------------------------------------
def dataset_uri(value: str) -> str:
    """A local path as the absolute path the trainer wants (it cannot know our working
    directory); URIs with a scheme (``file://``, ``s3://``, ``hf://``, ``https://``) as given."""
    if "://" in value:
        return value
    return str(Path(value).expanduser().resolve())


def _finetune(args: argparse.Namespace) -> int:
    hp = {
        key: value
        for key, value in {
            "max_steps": args.max_steps,
            "num_train_epochs": args.epochs,
            "learning_rate": args.learning_rate,
            "per_device_batch_size": args.batch_size,
            "gradient_accumulation_steps": args.grad_accum,
            "rank": args.rank,
            "alpha": args.alpha,
            "warmup_steps": args.warmup_steps,
            "target_modules": args.target_modules,
        }.items()
        if value is not None
    }
    request = FinetuneRequest(
        adapter_name=args.name,
        base_model=args.base_model,
        train=DatasetSpec(uri=dataset_uri(args.dataset), max_samples=args.max_samples),
        eval=DatasetSpec(uri=dataset_uri(args.eval)) if args.eval else None,
        hyperparameters=HyperParameters(**hp),
    )
    with client_for(args) as client:
        job = client.finetune(request)
        print(f"job {job.id}: {job.state.value} (adapter {args.name})", file=sys.stderr)
        if not args.follow:
            if args.json:
                print_json(job.model_dump(mode="json"))
            else:
                print(job.id)
            return 0
        job = follow_with_progress(client, job.id)
    if args.json:
        print_json(job.model_dump(mode="json"))
    else:
        print(describe_result(job))
    return 0 if job.state == JobState.succeeded else EXIT_SERVICE_ERROR


def _jobs(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        page = client.jobs(args.state, cursor=args.cursor)
    if args.json:
        print_json(page.model_dump(mode="json"))
        return 0
    print(jobs_table(page.jobs))
    if page.next_cursor:
        print(f"more: ocrtune jobs --cursor {page.next_cursor}", file=sys.stderr)
    return 0


def _job(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        job = client.job(args.id)
        if args.follow and not job.state.terminal:
            job = follow_with_progress(client, args.id)
    if args.json:
        print_json(job.model_dump(mode="json"))
    else:
        print(describe_result(job))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        job = client.cancel(args.id)
        if args.wait and not job.state.terminal:
            job = client.wait(args.id, timeout=120)
    if job.state.terminal:
        print(f"job {job.id}: {job.state.value}")
    else:
        # The worker stops at its next step boundary (within seconds); the state follows.
        print(f"job {job.id}: cancel requested (still {job.state.value}; --wait to wait for it)")
    return 0


# --- adapters -------------------------------------------------------------------------
def _adapters(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        if args.action == "upload":
            info = client.upload_adapter(
                args.name, name=args.as_name, base_model=args.base_model, model_family=args.family
            )
            if args.json:
                print_json(info.model_dump(mode="json"))
            else:
                print(f"published {info.name}@{info.version} (base model {info.base_model}, rank {info.rank})")
            return 0
        if args.action in ("load", "unload"):
            if args.action == "load":
                answer: BaseModel = client.load_adapter(args.name)
            else:
                answer = client.unload_adapter(args.name)
            if args.json:
                print(json.dumps(answer.model_dump(mode="json"), ensure_ascii=False))
            else:
                print(f"{args.action}ed {args.name}")
            return 0
        listing = client.adapters()
    if args.json:
        print_json(listing.model_dump(mode="json"))
        return 0
    print(adapters_table(listing.adapters))
    return 0


# --- dataset --------------------------------------------------------------------------
def _dataset_build(args: argparse.Namespace) -> int:
    try:
        report = build_parquet(args.images, args.output, labels=args.labels, skip_bad=args.skip_bad)
    except (FileNotFoundError, UnicodeDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for problem in report.problems:
        print(f"bad row: {problem}", file=sys.stderr)
    if report.output is None:
        reason = (
            "no good rows" if not report.problems else f"{len(report.problems)} bad row(s); fix them or pass --skip-bad"
        )
        print(f"error: nothing written: {reason}", file=sys.stderr)
        return 1
    print(
        f"wrote {report.rows_written} rows to {report.output}"
        + (f", skipped {len(report.problems)}" if report.problems else "")
    )
    return 0


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {number}")
    return number


def _module_names(value: str) -> list[str]:
    # Split only: the names are checked by HyperParameters, the same model the trainer validates.
    return [name.strip() for name in value.split(",") if name.strip()]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--inference-url", help="inference service (default: $OCRTUNE_INFERENCE_URL or http://127.0.0.1:8000)"
    )
    common.add_argument(
        "--trainer-url", help="trainer service (default: $OCRTUNE_TRAINER_URL or http://127.0.0.1:8001)"
    )
    common.add_argument("--api-key", help="bearer key when the services require one (default: $OCRTUNE_API_KEY)")
    common.add_argument("--json", action="store_true", help="print the service's answer as JSON")

    parser = argparse.ArgumentParser(prog="ocrtune", description="Fine-tune and serve OCR models")
    sub = parser.add_subparsers(dest="command", required=True)

    ocr = sub.add_parser(
        "ocr", parents=[common], help="OCR an image or a PDF, or a batch: files, folders, globs, with -o OUTDIR"
    )
    ocr.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="image (PNG, JPEG, ...) or PDF; a folder (its images and PDFs, sub-folders too); a glob ('scans/**/*.png')",
    )
    ocr.add_argument(
        "-o", "--output", type=Path,
        help="folder for the texts, one .txt per input (.json with --json) mirroring the names below each folder or "
        "glob; needed for more than one file. Without it, one file's text goes to stdout",
    )
    ocr.add_argument("--adapter", help="LoRA adapter: NAME or NAME@VERSION (default: the base model)")
    ocr.add_argument("--task", choices=[t.value for t in OCRTask], default=OCRTask.free_ocr.value)
    ocr.add_argument("--prompt", help="override the task's prompt")
    ocr.add_argument(
        "--resolution", choices=[m.value for m in ResolutionMode], default=ResolutionMode.auto.value,
        help="DeepSeek-OCR resolution mode (a model without modes ignores it; one without this mode answers 422)",
    )
    ocr.add_argument("--max-tokens", type=int, default=512)
    ocr.add_argument("--stream", action="store_true", help="print the text as it is read (one file, no -o)")
    ocr.add_argument(
        "--concurrency", type=_positive_int, default=4, metavar="N",
        help="files read at once in a batch (default 4; the service batches them on the model)",
    )
    ocr.set_defaults(handler=run_ocr)

    ft = sub.add_parser("finetune", parents=[common], help="submit a LoRA fine-tune")
    ft.add_argument("dataset", help="train dataset: path, file://, hf://datasets/..., s3://, https://")
    ft.add_argument("--name", required=True, help="adapter name to publish")
    ft.add_argument("--eval", help="held-out dataset URI (default: a fraction of train)")
    ft.add_argument("--base-model", help="default: the trainer's configured base model")
    ft.add_argument("--max-samples", type=int, help="use only the first N training rows")
    length = ft.add_mutually_exclusive_group()  # the request takes one of the two (HyperParameters says why)
    length.add_argument("--max-steps", type=int, help="optimizer steps (default: the recipe's 60)")
    length.add_argument("--epochs", type=float, metavar="N", help="passes over the train rows, instead of --max-steps")
    ft.add_argument("--learning-rate", type=float)
    ft.add_argument("--batch-size", type=int, help="per-device batch size")
    ft.add_argument("--grad-accum", type=int, help="gradient accumulation steps")
    ft.add_argument("--warmup-steps", type=int)
    ft.add_argument("--rank", type=int, help="LoRA rank")
    ft.add_argument("--alpha", type=int, help="LoRA alpha")
    ft.add_argument(
        "--target-modules", type=_module_names, metavar="NAMES",
        help="comma-separated module names LoRA adapts, e.g. q_proj,v_proj ('experts': a MoE model's routed "
        "experts; default: the reference recipe's attention and MLP projections)",
    )
    ft.add_argument("--follow", action="store_true", help="show progress until the job ends")
    ft.set_defaults(handler=_finetune)

    jobs = sub.add_parser("jobs", parents=[common], help="list fine-tune jobs")
    jobs.add_argument("--state", choices=[s.value for s in JobState])
    jobs.add_argument("--cursor", help="next page (printed after a full page)")
    jobs.set_defaults(handler=_jobs)

    job = sub.add_parser("job", parents=[common], help="show one job")
    job.add_argument("id")
    job.add_argument("--follow", action="store_true", help="show progress until the job ends")
    job.set_defaults(handler=_job)

    cancel = sub.add_parser("cancel", parents=[common], help="cancel a job")
    cancel.add_argument("id")
    cancel.add_argument("--wait", action="store_true", help="wait until the job has stopped")
    cancel.set_defaults(handler=_cancel)

    adapters = sub.add_parser(
        "adapters",
        parents=[common],
        help="list adapters; 'load NAME' / 'unload NAME'; 'upload FOLDER|ARCHIVE --name NAME [--base-model M]'",
    )
    adapters.add_argument("action", nargs="?", choices=["list", "load", "unload", "upload"], default="list")
    adapters.add_argument(
        "name", nargs="?", help="load/unload: NAME or NAME@VERSION; upload: a PEFT folder or a zip/tar of one"
    )
    adapters.add_argument("--name", dest="as_name", help="upload: adapter name to publish under")
    adapters.add_argument("--base-model", help="upload: the model it was trained on (default: the served model)")
    adapters.add_argument("--family", help="upload: model family (default: the served family)")
    adapters.set_defaults(handler=_adapters)

    dataset = sub.add_parser("dataset", help="dataset tools").add_subparsers(dest="dataset_command", required=True)
    build = dataset.add_parser("build", help="folder of images + labels file -> parquet (image, text)")
    build.add_argument(
        "images", type=Path, help="folder holding the images (paths in the labels file are relative to it)"
    )
    build.add_argument("-o", "--output", type=Path, required=True, help="parquet file to write")
    build.add_argument("--labels", type=Path, help="labels file (TSV/CSV/JSONL); default: the one in the folder")
    build.add_argument("--skip-bad", action="store_true", help="write the good rows even if some are bad")
    build.set_defaults(handler=_dataset_build)
    return parser


def run(argv: list[str] | None = None) -> int:
    """Parse and run one command; the exit status is returned, never a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "action", None) in ("load", "unload") and not args.name:
        parser.error(f"adapters {args.action} needs an adapter NAME")
    if getattr(args, "action", None) == "upload" and not (args.name and args.as_name):
        parser.error("adapters upload needs a FOLDER or ARCHIVE and --name NAME")
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except OCRTuneError as exc:
        where = f" ({exc.body.where})" if exc.body.where else ""
        status = f" [HTTP {exc.status} {exc.code.value}]" if exc.status else ""
        print(f"error: {exc.message}{where}{status}", file=sys.stderr)
        return EXIT_SERVICE_ERROR
    except ValidationError as exc:
        # A request we refuse to send (bad adapter name, out-of-range hyper-parameter): same words as the server's 422.
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "request"
            print(f"error: {field}: {err['msg']}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
