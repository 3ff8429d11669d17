"""``ocrtune ocr``: one file (printed, or streamed as it decodes) or many (files, folders, globs)
written to an output folder with a progress bar; see ``batch`` for what a batch does."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ocrtune_client.batch import InputError, collect_inputs, output_paths, run_batch
from ocrtune_client.client import OCRTuneClient
from ocrtune_client.render import FileProgress, batch_summary
from ocrtune_shared.ocr import OCROptions, OCRResponse

EXIT_SERVICE_ERROR = 1
EXIT_USAGE = 2


def client_for(args: argparse.Namespace) -> OCRTuneClient:
    return OCRTuneClient(args.inference_url, args.trainer_url, api_key=args.api_key)


def print_json(payload: object) -> None:
    print(json.dumps(payload, ensure_ascii=False, indent=2, default=str))


def ocr_options(args: argparse.Namespace) -> OCROptions:
    """The request's options from the flags (validated as the service validates them)."""
    return OCROptions(task=args.task, max_tokens=args.max_tokens, prompt=args.prompt, resolution=args.resolution)


def run_ocr(args: argparse.Namespace) -> int:
    try:
        items = collect_inputs(args.inputs)
        if args.output is None and len(items) > 1:
            raise InputError(f"{len(items)} files to read: give a folder for their texts with -o/--output")
        outputs = (
            output_paths(items, args.output, ".json" if args.json else ".txt") if args.output is not None else None
        )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.stream and outputs is not None:
        print("error: --stream prints one file's text as it arrives; it cannot write to -o", file=sys.stderr)
        return EXIT_USAGE
    options = ocr_options(args)
    with client_for(args) as client:
        if outputs is None:
            if args.stream:
                return _ocr_stream(client, items[0].source, args.adapter, options, args.json)
            return _ocr_one(client, items[0].source, args.adapter, options, args.json)
        progress = FileProgress(len(items), sys.stderr)
        try:
            report = run_batch(
                client, items, outputs, adapter=args.adapter, options=options, concurrency=args.concurrency,
                as_json=args.json, on_done=progress,
            )
        finally:
            progress.close()
    print(batch_summary(report, len(items), args.output), file=sys.stderr)
    return EXIT_SERVICE_ERROR if report.failures else 0


def _ocr_one(client: OCRTuneClient, path: Path, adapter: str | None, options: OCROptions, as_json: bool) -> int:
    response = client.ocr(path, adapter=adapter, options=options)
    if as_json:
        print_json(response.model_dump(mode="json"))
        return 0
    if len(response.pages) > 1:
        for page in response.pages:
            print(f"--- page {page.page} ---")
            print(page.text)
    else:
        print(response.text)
    _print_usage(response)
    return 0


def _ocr_stream(client: OCRTuneClient, path: Path, adapter: str | None, options: OCROptions, as_json: bool) -> int:
    page = 1
    for event in client.ocr_stream(path, adapter=adapter, options=options):
        if as_json:  # one OCRStreamEvent per line, as they come
            print(event.model_dump_json(), flush=True)
            continue
        if event.done and event.response is not None:
            print()
            _print_usage(event.response)
            break
        if event.page != page:  # the next page of a PDF begins
            page = event.page
            print(f"\n--- page {page} ---", flush=True)
        print(event.delta, end="", flush=True)
    return 0


def _print_usage(response: OCRResponse) -> None:
    print(
        f"[{response.adapter or 'base model'}, {response.usage.completion_tokens} tokens, {response.latency_ms:.0f} ms]",
        file=sys.stderr,
    )
