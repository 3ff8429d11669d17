"""The main job, end to end: ``python -m ocrtune_devkit.demo`` (``make demo``).

What a new user does with ocrtune, in one command:

1. picks the base model: ``$OCR_BASE_MODEL``, else DeepSeek-OCR-2 when a GPU is present,
   else the reader, a small pretrained Chinese line-OCR model shipped in the repository
   (``ocrtune_devkit.reader``; offline, CPU);
2. builds a small synthetic dataset of the user's kind of document: receipt lines in a
   serif font, scanned (grey paper, blur, noise, skew), another kind than the reader's
   pre-training; a train parquet and a held-out parquet of lines never trained on
   (or takes the user's: ``--train URI --eval URI``);
3. starts the inference and trainer services on 127.0.0.1, each in its own process
   group, with the adapter store and the SQLite job database under ``./var/demo``;
4. ``POST /finetune`` and follows the job with a progress bar (step, loss, ETA);
5. OCRs the held-out images with the base model and with the new adapter
   (``X-Adapter``) and prints both texts side by side, with CER before and after;
6. leaves the services running and prints their PIDs, URLs and curl lines.
   ``python -m ocrtune_devkit.demo stop`` (or ``--stop``) stops them.

A JSON summary is written to ``<workdir>/summary.json`` (and ``--json-summary``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ocrtune_client import OCRTuneClient, OCRTuneError
from ocrtune_client.render import Comparison, follow_with_progress, side_by_side
from ocrtune_devkit.demo_recipe import HeldOut, build_dataset, choose_recipe, held_out_from_parquet
from ocrtune_devkit.demo_services import RunningServices, start_services, stop_services, wait_ready
from ocrtune_shared.cer import character_error_rate
from ocrtune_shared.finetune import DatasetSpec, FinetuneRequest
from ocrtune_shared.jobs import JobState
from ocrtune_shared.ocr import OCROptions

ADAPTER_NAME = "demo-zh"
SUMMARY_FILE = "summary.json"


# --- the side-by-side ------------------------------------------------------------------------
def ocr_both(client: OCRTuneClient, held_out: list[HeldOut], adapter: str, max_tokens: int) -> list[Comparison]:
    options = OCROptions(max_tokens=max_tokens)

    def one(item: HeldOut) -> Comparison:
        base = client.ocr(item.png, options=options, filename="held-out.png").text
        adapted = client.ocr(item.png, adapter=adapter, options=options, filename="held-out.png").text
        return Comparison(item.text, base, adapted)

    # A few at a time: the service batches them, as it would for real users.
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, held_out))


def print_side_by_side(rows: list[Comparison], title: str) -> dict[str, float] | None:
    if not rows:
        return None
    before = character_error_rate([r.base for r in rows], [r.text for r in rows])
    after = character_error_rate([r.adapted for r in rows], [r.text for r in rows])
    print(side_by_side(rows, before, after, title))
    return {
        "cer_before": before.corpus_cer,
        "cer_after": after.corpus_cer,
        "mean_cer_before": before.mean_cer,
        "mean_cer_after": after.mean_cer,
        "images": len(rows),
    }


def print_next_steps(services: RunningServices, adapter: str, sample_image: Path, train_uri: str) -> None:
    inf, tr = services.inference, services.trainer
    print(
        f"""
The services keep running:
  inference  {inf.url}  (pid {inf.pid}, log {inf.log})
  trainer    {tr.url}  (pid {tr.pid}, log {tr.log})

Try them:
  curl -s -F file=@{sample_image} {inf.url}/ocr
  curl -s -H 'X-Adapter: {adapter}' -F file=@{sample_image} {inf.url}/ocr
  curl -s {inf.url}/adapters
  curl -s -X POST {tr.url}/finetune -H 'Content-Type: application/json' \\
       -d '{{"adapter_name": "my-adapter", "train": {{"uri": "{train_uri}"}}}}'
  curl -s {tr.url}/finetune
  export OCRTUNE_INFERENCE_URL={inf.url} OCRTUNE_TRAINER_URL={tr.url}
  .venv/bin/ocrtune ocr {sample_image} --adapter {adapter}

Stop them:  .venv/bin/python -m ocrtune_devkit.demo stop{"" if services.workdir == str(Path("var/demo").resolve()) else f" --workdir {services.workdir}"}"""
    )


# --- main ---------------------------------------------------------------------------------------
def run_demo(args: argparse.Namespace) -> dict:
    t0 = time.monotonic()
    workdir = Path(args.workdir).resolve()
    stopped = stop_services(workdir)
    if stopped:
        print(f"stopped the services of an earlier demo: {', '.join(stopped)}")
    workdir.mkdir(parents=True, exist_ok=True)

    recipe = choose_recipe(args.model, args.steps)
    print(f"base model: {recipe.model}" + (" (the shipped 8 M-parameter reader, CPU)" if recipe.offline else ""))

    data_dir = workdir / "data"
    if args.train:
        train_uri, eval_uri = args.train, args.eval
        held_out = (
            held_out_from_parquet(args.eval) if args.eval and Path(args.eval.removeprefix("file://")).is_file() else []
        )
        data_roots = [data_dir] + [
            Path(u.removeprefix("file://")).resolve().parent for u in (args.train, args.eval) if u
        ]
    else:
        train_path, eval_path, held_out = build_dataset(data_dir, recipe, args.seed)
        train_uri, eval_uri = str(train_path), str(eval_path)
        data_roots = [data_dir]
        print(
            f"dataset: {recipe.train_lines} scanned receipt lines in {train_path}, {len(held_out)} other lines "
            f"held out in {eval_path}"
        )

    services = start_services(workdir, recipe, data_roots, (args.inference_port, args.trainer_port))
    print(f"starting the services (pids {services.inference.pid}, {services.trainer.pid}); logs in {workdir / 'logs'}")
    client = OCRTuneClient(services.inference.url, services.trainer.url)
    try:
        ready_s = wait_ready(services)

        request = FinetuneRequest(
            adapter_name=args.name,
            base_model=recipe.model,
            train=DatasetSpec(uri=train_uri),
            eval=DatasetSpec(uri=eval_uri) if eval_uri else None,
            hyperparameters=recipe.hyperparameters,
        )
        t_job = time.monotonic()
        job = client.finetune(request)
        print(f"\nPOST /finetune -> job {job.id} ({job.state.value})")
        job = follow_with_progress(client, job.id, stream=sys.stdout)
        job_s = time.monotonic() - t_job
        if job.state != JobState.succeeded or not job.result.adapter:
            reason = job.error.message if job.error else job.state.value
            raise RuntimeError(f"the fine-tune did not succeed: {reason}")
        adapter = job.result.adapter
        result = job.result
        print(f"job {job.state.value} in {job_s:.0f} s: adapter {adapter} published")
        if result.cer_before and result.cer_after:
            print(
                f"trainer's evaluation ({result.eval_samples} held-out images): CER "
                f"{result.cer_before.corpus_cer * 100:.1f}% -> {result.cer_after.corpus_cer * 100:.1f}%"
            )

        t_ocr = time.monotonic()
        rows = ocr_both(client, held_out, adapter, recipe.max_tokens)
        ocr_s = time.monotonic() - t_ocr
        headline = print_side_by_side(rows, "Held-out lines (never trained on), served by the inference service:")
        if headline:
            print(
                f"\nCER without adapter {headline['cer_before'] * 100:.1f}%  ->  with adapter "
                f"{headline['cer_after'] * 100:.1f}%"
            )

        sample_image = data_dir / "held-out-0.png"
        if held_out:
            sample_image.parent.mkdir(parents=True, exist_ok=True)
            sample_image.write_bytes(held_out[0].png)
        summary = {
            "model": recipe.model,
            "offline_reader": recipe.offline,
            "adapter": adapter,
            "job_id": job.id,
            "hyperparameters": recipe.hyperparameters.model_dump(mode="json"),
            "train_uri": train_uri,
            "eval_uri": eval_uri,
            "cer_before": headline["cer_before"] if headline else None,
            "cer_after": headline["cer_after"] if headline else None,
            "served": headline,
            "trainer_result": result.model_dump(mode="json", exclude={"loss_curve"}),
            "final_loss": result.loss_curve[-1].loss if result.loss_curve else None,
            "timings_s": {
                "services_ready": round(ready_s, 1),
                "job": round(job_s, 1),
                "ocr_side_by_side": round(ocr_s, 1),
                "total": round(time.monotonic() - t0, 1),
            },
            "services": services.record(),
        }
        (workdir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False))
        if args.json_summary:
            Path(args.json_summary).write_text(json.dumps(summary, indent=2, ensure_ascii=False))
        print(f"\nsummary: {workdir / SUMMARY_FILE}  (demo took {summary['timings_s']['total']:.0f} s)")
        if args.stop:
            print(f"stopped: {', '.join(stop_services(workdir))}")
        else:
            print_next_steps(services, adapter, sample_image, train_uri)
        return summary
    except BaseException:
        # A failed demo must not leave half-started services behind.
        stop_services(workdir)
        raise
    finally:
        client.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ocrtune_devkit.demo",
        description="Fine-tune an OCR adapter and serve it, end to end ('stop' stops the services it left running)",
    )
    parser.add_argument("action", nargs="?", choices=["run", "stop"], default="run")
    parser.add_argument(
        "--workdir", default="var/demo", help="adapter store, job database, data and logs (default ./var/demo)"
    )
    parser.add_argument("--model", help="base model id or path (default: $OCR_BASE_MODEL, else by hardware)")
    parser.add_argument("--train", help="your own train dataset URI instead of the synthetic one")
    parser.add_argument("--eval", help="your own held-out dataset URI (a local parquet is also OCR'd side by side)")
    parser.add_argument("--name", default=ADAPTER_NAME, help=f"adapter name (default {ADAPTER_NAME})")
    parser.add_argument("--steps", type=int, help="training steps (default: 120 with the reader on the CPU, 60 on a GPU)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic lines")
    parser.add_argument("--inference-port", type=int, default=8000, help="0 or a busy port: any free one")
    parser.add_argument("--trainer-port", type=int, default=8001, help="0 or a busy port: any free one")
    parser.add_argument("--json-summary", help="also write the JSON summary here")
    parser.add_argument("--stop", action="store_true", help="stop the services when the demo is done")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.action == "stop":
        stopped = stop_services(Path(args.workdir).resolve())
        print(f"stopped: {', '.join(stopped)}" if stopped else f"no demo services recorded in {args.workdir}")
        return
    try:
        run_demo(args)
    except OCRTuneError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        sys.exit(1)
    except (RuntimeError, TimeoutError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\ninterrupted; services stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
