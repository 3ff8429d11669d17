"""``ocrtune-devkit``: build the tiny checkpoint and synthetic datasets from the shell."""

from __future__ import annotations

import argparse
from pathlib import Path

from ocrtune_devkit import synthetic
from ocrtune_devkit.tiny_models import build_tiny_qwen2_vl


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ocrtune-devkit")
    sub = parser.add_subparsers(dest="command", required=True)
    model = sub.add_parser("tiny-model", help="write the tiny Qwen2-VL checkpoint, print its folder")
    model.add_argument("--cache-dir", type=Path)
    data = sub.add_parser("synthetic", help="render synthetic Chinese OCR lines")
    data.add_argument("output", type=Path)
    data.add_argument("--count", type=int, default=64)
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--layout", choices=["parquet", "image_folder", "hf_disk"], default="parquet")
    args = parser.parse_args(argv)
    if args.command == "tiny-model":
        print(build_tiny_qwen2_vl(args.cache_dir))
        return
    samples = synthetic.make_samples(args.count, seed=args.seed)
    writer = {
        "parquet": synthetic.write_parquet,
        "image_folder": synthetic.write_image_folder,
        "hf_disk": synthetic.write_hf_disk,
    }[args.layout]
    print(writer(samples, args.output))


if __name__ == "__main__":
    main()
