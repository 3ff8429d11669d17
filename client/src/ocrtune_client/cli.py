"""``ocrtune``: the command line over the client and the dataset builder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ocrtune_client.dataset_builder import build_parquet


def _dataset_build(args: argparse.Namespace) -> int:
    try:
        report = build_parquet(args.images, args.output, labels=args.labels, skip_bad=args.skip_bad)
    except (FileNotFoundError, UnicodeDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in report.problems:
        print(f"bad row: {problem}", file=sys.stderr)
    if report.output is None:
        reason = "no good rows" if not report.problems else f"{len(report.problems)} bad row(s); fix them or pass --skip-bad"
        print(f"error: nothing written: {reason}", file=sys.stderr)
        return 1
    print(f"wrote {report.rows_written} rows to {report.output}" + (f", skipped {len(report.problems)}" if report.problems else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocrtune", description="Fine-tune and serve OCR models")
    sub = parser.add_subparsers(dest="command", required=True)
    dataset = sub.add_parser("dataset", help="dataset tools").add_subparsers(dest="dataset_command", required=True)
    build = dataset.add_parser("build", help="folder of images + labels file -> parquet (image, text)")
    build.add_argument("images", type=Path, help="folder holding the images (paths in the labels file are relative to it)")
    build.add_argument("-o", "--output", type=Path, required=True, help="parquet file to write")
    build.add_argument("--labels", type=Path, help="labels file (TSV/CSV/JSONL); default: the one in the folder")
    build.add_argument("--skip-bad", action="store_true", help="write the good rows even if some are bad")
    build.set_defaults(handler=_dataset_build)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.handler(args))


if __name__ == "__main__":
    main()
