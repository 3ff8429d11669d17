"""Inference service benchmark: ratios against raw AsyncLLM measured in the same run.

(One script over ~350 lines on purpose: it is carried alone, with ``bench_lines.py`` and
``parity.py``, to the offline GPU machine and run there as is.)

Prints (the targets in docs/models.md):
- HTTP overhead: images/s through ``POST /ocr`` / raw ``AsyncLLM`` on the same images and
  prompts, same engine settings (goal >= 0.95); against two baselines: images decoded once up
  front (the engine alone), and each PNG decoded per request (what a caller of raw AsyncLLM
  holding image files does, as the service must);
- mixed adapters: images/s with requests spread over 4 adapters / all on one adapter (goal >= 0.9);
- hot-load: first request to a freshly published adapter minus a warm request to it (goal <= 1 s);
- parity: every answer of a mixed batch (base + 4 adapters, concurrent) against the same request
  sent alone, judged on the log-probabilities the service returns (``parity.py``): a wrong
  adapter shows in the first step's distribution, a bf16 near-tie flip does not;
- throughput: images/s at each ``--concurrency`` (lines, and with ``--pages N`` A4 receipt
  pages, as pages/day).

Every timed request carries an image no earlier request carried (one pixel differs), so that
vLLM's prefix cache never serves an image twice: documents in production are distinct too.

Each ratio is the median over ``--repeats`` pairs of runs made back to back. The service (a
subprocess) and the raw engine (in this process) are both up; their runs alternate, one at a
time, so that the load others put on a shared machine falls on each alike. The HTTP client
(aiohttp) runs in this process: its cost counts against the service, as it would for any
client on the same machine.

Models (``--model``):
- ``reader`` (default, CPU): the 8 M-parameter line reader; adapters trained to one fixed
  answer each (checked on every answer);
- ``tiny``: the 1 M-parameter random test model, likewise;
- ``deepseek-ocr2``: full-size DeepSeek-OCR-2 with random bf16 weights, built on the GPU
  (``ocrtune_devkit.deepseek.build_full_deepseek_ocr2``), random adapters converted for vLLM
  as the trainer publishes them (``--expert-lora``: routed experts too, GPU only);
- ``deepseek-ocr2-reduced``: the same with the reduced test checkpoint (CPU smoke test).

    .venv/bin/python bench/inference_bench.py [--requests 64] [--repeats 5]
    # GPU (docs/gpu-machine.md): lines rendered here and carried, fonts being absent there
    .venv/bin/python bench/inference_bench.py --render-only --samples .gpudata/lines.jsonl --pages 4
    python3 bench/inference_bench.py --model deepseek-ocr2 --samples .gpudata/lines.jsonl --pages 128 \\
        --concurrency 16,64 --max-tokens 32 --requests 256 --repeats 3 --expert-lora
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import parity  # noqa: E402

ADAPTER_TEXTS = {"a0": "甲乙丙丁", "a1": "一二三四五", "a2": "日月年", "a3": "上下左右中", "a4": "金额合计元"}
MIXED = ["a0", "a1", "a2", "a3"]
PAGE_TOKENS = 512  # a random model never stops: every page answer is this long
PARITY_TOP_LOGPROBS = 5
MODELS = ("reader", "tiny", "deepseek-ocr2", "deepseek-ocr2-reduced")


@dataclass
class Workload:
    """What one ``--model`` serves: the base, its adapters (PEFT folders) and how to publish one."""

    model_dir: Path
    description: str
    adapters: dict[str, Path]
    publish: Callable[[object, str, Path], None]
    fixed_answers: dict[str, str] = field(default_factory=dict)  # adapter -> the one text it was taught
    settings: dict = field(default_factory=dict)


def build_workload(args: argparse.Namespace, scratch: Path) -> Workload:
    import torch

    cuda = torch.cuda.is_available()
    if args.model in ("reader", "tiny"):
        from ocrtune_devkit.adapters import AdapterSpec, build_tiny_adapter, publish_tiny_adapter
        from ocrtune_devkit.reader import reader_checkpoint
        from ocrtune_devkit.tiny_models import build_tiny_qwen2_vl

        tiny = args.model == "tiny"
        model_dir = build_tiny_qwen2_vl() if tiny else reader_checkpoint()
        # The reader reads what it sees, so teaching it one fixed answer for any line takes longer
        # than the random tiny model (40 steps left "一二四五" for "一二三四五", 120 did not stop).
        steps, samples, rate = (40, 4, 3e-3) if tiny else (300, 8, 5e-3)
        specs = {n: AdapterSpec(fixed_text=t, steps=steps, samples=samples, learning_rate=rate)
                 for n, t in ADAPTER_TEXTS.items()}
        return Workload(
            model_dir=model_dir,
            description="tiny random Qwen2-VL" if tiny else "reader-zh (8 M Qwen2-VL)",
            adapters={n: build_tiny_adapter(spec, model_dir) for n, spec in specs.items()},
            publish=lambda store, name, folder: publish_tiny_adapter(store, name, folder, str(model_dir)),
            fixed_answers=dict(ADAPTER_TEXTS),
            settings={"dtype": "float32", "max_model_len": 1024},
        )

    from ocrtune_devkit.deepseek import build_full_deepseek_ocr2, build_reduced_deepseek_ocr2, make_random_adapter
    from ocrtune_shared.adapter_import import import_peft_adapter

    full = args.model == "deepseek-ocr2"
    checkpoint = build_full_deepseek_ocr2(device="cuda" if cuda else "cpu") if full else build_reduced_deepseek_ocr2()
    base = str(checkpoint.vllm)
    adapters = {
        name: make_random_adapter(checkpoint.native, scratch / name, experts=args.expert_lora, seed=10 + k)
        for k, name in enumerate(ADAPTER_TEXTS)
    }
    return Workload(
        model_dir=checkpoint.vllm,
        description=("DeepSeek-OCR-2 full size (3.4 B, random bf16 weights)" if full
                     else "DeepSeek-OCR-2 reduced (2-layer LM, random weights)")
        + f", random LoRA r16 {'with' if args.expert_lora else 'without'} routed experts",
        adapters=adapters,
        publish=lambda store, name, folder: import_peft_adapter(
            store, folder, name=name, base_model=base, model_family="deepseek_ocr2"
        ),
        settings={
            "dtype": "bfloat16" if cuda else "float32",
            "max_model_len": 4096,
            # Two engines (the service and the raw baseline) share the GPU.
            "gpu_memory_utilization": 0.4,
        },
    )


class DistinctImages:
    """PNGs that no earlier request carried: the base images with a serial number in their first pixels."""

    def __init__(self, pngs: list[bytes]) -> None:
        from PIL import Image

        self.images = [Image.open(io.BytesIO(png)).convert("RGB") for png in pngs]
        self.serial = 0

    def take(self, count: int) -> list[bytes]:
        out = []
        for _ in range(count):
            self.serial += 1
            image = self.images[self.serial % len(self.images)].copy()
            for k in range(3):  # 24 bits of serial number, one byte per pixel's red channel
                r, g, b = image.getpixel((k, 0))
                image.putpixel((k, 0), ((self.serial >> (8 * k)) & 0xFF, g, b))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", compress_level=1)
            out.append(buffer.getvalue())
        return out


async def _pool(count: int, worker: Callable[[int], Awaitable[None]], concurrency: int) -> float:
    """Run ``worker(i)`` for i < count with ``concurrency`` in flight; return items per second."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def drain() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await worker(i)

    started = time.perf_counter()
    await asyncio.gather(*(drain() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


class RawEngine:
    """The baseline: the same engine settings and prompts, called in-process with no HTTP."""

    def __init__(self, settings, model_dir: Path, max_tokens: int) -> None:
        from vllm import SamplingParams
        from vllm.v1.engine.async_llm import AsyncLLM

        from ocrtune_inference.engine import engine_args
        from ocrtune_inference.families import family_for
        from ocrtune_shared.ocr import OCROptions

        self.family = family_for(model_dir)
        self.options = OCROptions()
        self.llm = AsyncLLM.from_engine_args(engine_args(settings, str(model_dir), self.family.engine_kwargs()))
        self.params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
        self.ids = iter(range(10**9))

    async def run(self, pngs: list[bytes], concurrency: int, *, decode_each: bool) -> float:
        """Images/s; ``decode_each``: each request decodes its PNG, as any caller holding image files must."""
        from PIL import Image

        def prompt(png: bytes) -> dict:
            return self.family.prompt(Image.open(io.BytesIO(png)).convert("RGB"), self.options).as_vllm()

        ready = None if decode_each else [prompt(png) for png in pngs]

        async def one(i: int) -> None:
            request = prompt(pngs[i]) if ready is None else ready[i]
            async for _ in self.llm.generate(request, self.params, f"raw-{next(self.ids)}"):
                pass

        return await _pool(len(pngs), one, concurrency)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(settings, log: Path) -> subprocess.Popen:
    import httpx

    env = {**os.environ, **{f"OCRTUNE_INFERENCE_{k.upper()}": str(v) for k, v in settings.model_dump().items()
                            if v is not None and not isinstance(v, list)}}
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "ocrtune_inference"], env=env, start_new_session=True,
                                   stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{settings.port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError("service not ready in 600 s")


class Bench:
    def __init__(self, args: argparse.Namespace, workload: Workload, raw: RawEngine, http, store, images) -> None:
        self.args, self.workload, self.raw, self.http, self.store = args, workload, raw, http, store
        self.lines: DistinctImages = images["lines"]
        self.pages: DistinctImages | None = images.get("pages")
        self.wrong_fixed = 0

    async def post(self, png: bytes, adapter: str | None, max_tokens: int | None = None) -> str:
        return (await self.ocr(png, adapter, max_tokens))["text"]

    async def ocr(self, png: bytes, adapter: str | None, max_tokens: int | None = None,
                  logprobs: int | None = None) -> dict:
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("file", png, filename="p.png", content_type="image/png")
        form.add_field("max_tokens", str(max_tokens or self.args.max_tokens))
        if logprobs is not None:
            form.add_field("logprobs", str(logprobs))
        headers = {"X-Adapter": adapter} if adapter else {}
        async with self.http.post("/ocr", data=form, headers=headers) as response:
            body = await response.json()
            assert response.status == 200, body
        expected = self.workload.fixed_answers.get(adapter or "")
        if expected is not None and body["text"] != expected:
            self.wrong_fixed += 1
        return body

    async def http_run(self, pngs: list[bytes], route: Callable[[int], str | None], concurrency: int,
                       max_tokens: int | None = None) -> float:
        return await _pool(len(pngs), lambda i: self.post(pngs[i], route(i), max_tokens), concurrency)

    async def parity(self, concurrency: int) -> dict:
        """Base + 4 adapters on the same images: each alone, then all at once, shuffled (``parity.judge``)."""
        pngs = self.lines.take(self.args.parity_images)
        routes: list[str | None] = [None, *MIXED]

        async def steps(i: int, route: str | None) -> list[parity.Step]:
            body = await self.ocr(pngs[i], route, logprobs=PARITY_TOP_LOGPROBS)
            return parity.steps_of(body["pages"][0])

        alone = {(i, r): await steps(i, r) for i in range(len(pngs)) for r in routes}
        jobs = [(i, r) for i in range(len(pngs)) for r in routes] * 2
        random.Random(7).shuffle(jobs)
        answers: dict[int, list[parity.Step]] = {}

        async def one(k: int) -> None:
            answers[k] = await steps(*jobs[k])

        await _pool(len(jobs), one, concurrency)
        verdicts = [parity.judge(answers[k], alone[jobs[k]], [alone[(jobs[k][0], o)] for o in routes if o != jobs[k][1]])
                    for k in range(len(jobs))]
        # An adapter that changes nothing would make the check blind.
        effective = sum([s.token for s in alone[(i, r)]] != [s.token for s in alone[(i, None)]]
                        for i in range(len(pngs)) for r in MIXED)
        return {
            **parity.summary(verdicts),
            "adapter_answers_differing_from_base": f"{effective}/{len(pngs) * len(MIXED)}",
            "example_alone": {str(r): "".join(s.token for s in alone[(0, r)])[:60] for r in routes},
        }

    async def measure(self) -> dict:
        args = self.args
        c = args.concurrency[0]
        count = args.requests
        results: dict[str, list[float]] = {k: [] for k in ("raw", "raw_png", "base", "base2", "one", "mixed")}
        for name in MIXED:
            async with self.http.post(f"/adapters/{name}/load") as response:
                assert response.status == 200, await response.text()
        # Warm-up: compile paths and LoRA slots of both engines.
        if self.raw is not None:
            await self.raw.run(self.lines.take(c), c, decode_each=False)
        await self.http_run(self.lines.take(c), lambda i: None, c)
        await self.http_run(self.lines.take(c), lambda i: MIXED[i % 4], c)
        out: dict = {"parity": await self.parity(c)}
        print("parity:", json.dumps(out["parity"], ensure_ascii=False), flush=True)
        # Interleaved, so that the load other work puts on the machine falls on every variant alike.
        # Each figure is also taken as a ratio of two runs back to back (order alternating), so
        # that a burst of someone else's work spoils one pair, not the whole comparison.
        for r in range(args.repeats):
            pairs = [("raw", lambda p: self.raw.run(p, c, decode_each=False)),
                     ("base", lambda p: self.http_run(p, lambda i: None, c)),
                     ("one", lambda p: self.http_run(p, lambda i: "a0", c)),
                     ("mixed", lambda p: self.http_run(p, lambda i: MIXED[i % 4], c)),
                     ("raw_png", lambda p: self.raw.run(p, c, decode_each=True)),
                     ("base2", lambda p: self.http_run(p, lambda i: None, c))]
            for first, second in (pairs[0:2], pairs[2:4], pairs[4:6]):
                for key, run in ((first, second) if r % 2 == 0 else (second, first)):
                    pngs = self.lines.take(count)
                    results[key].append(await run(pngs))
            print(f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in results.items()),
                  flush=True)
        out["runs"] = results
        hot = []
        for k in range(max(args.repeats, 2)):
            self.workload.publish(self.store, f"hot-{k}", self.workload.adapters["a4"])
            pngs = self.lines.take(4)
            started = time.perf_counter()
            await self.post(pngs[0], f"hot-{k}")
            cold = time.perf_counter() - started
            warm = []
            for png in pngs[1:]:
                started = time.perf_counter()
                await self.post(png, f"hot-{k}")
                warm.append(time.perf_counter() - started)
            hot.append(cold - statistics.median(warm))
        out["hot_extra_s"] = hot
        print(f"hot-load extra s: {[round(x, 3) for x in hot]}", flush=True)
        out["throughput"] = {}
        for conc in args.concurrency:
            lines = await self.http_run(self.lines.take(max(count, 2 * conc)), lambda i: None, conc)
            entry = {"lines_per_s": lines}
            if self.pages is not None:
                try:
                    pages = await self.http_run(self.pages.take(max(args.pages, 2 * conc)), lambda i: None, conc,
                                                max_tokens=PAGE_TOKENS)
                    entry |= {"pages_per_s": pages, "pages_per_day": pages * 86400}
                except Exception as exc:  # keep the figures measured so far; say what failed
                    entry["pages_error"] = f"{type(exc).__name__}: {exc}"[:500]
            out["throughput"][str(conc)] = entry
            print(f"throughput c={conc}: {entry}", flush=True)
        out["fixed_answer_mismatches"] = self.wrong_fixed
        return out


def versions() -> dict:
    import torch
    import transformers
    import vllm

    info = {"torch": torch.__version__, "transformers": transformers.__version__, "vllm": vllm.__version__,
            "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def report(args: argparse.Namespace, workload: Workload, info: dict, out: dict) -> dict:
    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    runs = out["runs"]
    http_raw = [h / r for h, r in zip(runs["base"], runs["raw"], strict=True)]
    mixed_one = [m / o for m, o in zip(runs["mixed"], runs["one"], strict=True)]
    http_png = [h / r for h, r in zip(runs["base2"], runs["raw_png"], strict=True)]
    where = info.get("gpu") or f"{info['cpus']} CPUs, vLLM CPU engine"
    print(f"\nmachine: {where}; vllm {info['vllm']}, torch {info['torch']}, transformers {info['transformers']}")
    print(f"model: {workload.description}; {args.requests} images x {args.repeats} repeats, concurrency "
          f"{args.concurrency[0]}, max_tokens {args.max_tokens}")
    for key, label in (("raw", "raw AsyncLLM images/s"), ("raw_png", "raw AsyncLLM, PNG decoded"),
                       ("base", "HTTP /ocr base images/s"), ("one", "HTTP /ocr one adapter"),
                       ("mixed", "HTTP /ocr 4 adapters mixed")):
        values = runs[key] + (runs["base2"] if key == "base" else [])
        print(f"{label:28s}: {med(runs[key]):8.2f}  runs {[round(x, 2) for x in values]}")
    print(f"RATIO http/raw (goal >= 0.95)          : {med(http_raw):.3f}  pairs {[round(x, 2) for x in http_raw]}")
    print(f"RATIO http/raw decoding its PNGs       : {med(http_png):.3f}  pairs {[round(x, 2) for x in http_png]}")
    print(f"RATIO mixed/one adapter (goal >= 0.9)  : {med(mixed_one):.3f}  pairs {[round(x, 2) for x in mixed_one]}")
    print(f"HOT-LOAD extra s, first vs warm (<= 1) : {med(out['hot_extra_s']):.3f}  runs "
          f"{[round(x, 3) for x in out['hot_extra_s']]}")
    check = out["parity"]
    print(f"PARITY mixed vs alone                  : {check['wrong']} wrong of {check['requests']}; "
          f"{check['same']} identical, {check['tie_partings']} parted at a near-tie (gaps, nats: "
          f"{check['parting_gaps_nats']}); first-step distance to own route <= "
          f"{check['first_step_distance_to_own_route_max']}, to other routes >= "
          f"{check['first_step_distance_to_other_routes_min']}; adapters change the answer in "
          f"{check['adapter_answers_differing_from_base']}")
    if workload.fixed_answers:
        print(f"fixed-answer adapters: {out['fixed_answer_mismatches']} answers differed from the taught text")
    for conc, entry in out["throughput"].items():
        page = (f", pages/s {entry['pages_per_s']:.2f} = {entry['pages_per_day']:,.0f} pages/day "
                f"({PAGE_TOKENS} tokens each)") if "pages_per_s" in entry else ""
        if "pages_error" in entry:
            page = f", pages FAILED: {entry['pages_error']}"
        print(f"THROUGHPUT concurrency {conc:>3}: lines/s {entry['lines_per_s']:.2f}{page}")
    return {"machine": info, "model": workload.description, "args": vars(args),
            "ratios": {"http_raw": med(http_raw), "http_raw_png": med(http_png), "mixed_one": med(mixed_one)},
            "hot_extra_s": med(out["hot_extra_s"]), **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=MODELS, default="reader")
    parser.add_argument("--tiny", action="store_true", help="same as --model tiny")
    parser.add_argument("--requests", type=int, default=64, help="images per throughput run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", default="16", help="comma-separated; the first is the ratios' own")
    parser.add_argument("--max-tokens", type=int, default=16, help="answer length cap of line requests")
    parser.add_argument("--parity-images", type=int, default=8, help="images of the mixed-vs-alone check")
    parser.add_argument("--pages", type=int, default=0, help="A4 pages per throughput run (0: none)")
    parser.add_argument("--expert-lora", action="store_true", help="deepseek models: adapters on routed experts too")
    parser.add_argument("--max-num-batched-tokens", type=int, default=None,
                        help="tokens an engine step may schedule, both engines (default: vLLM's choice)")
    parser.add_argument("--samples", help="JSONL of rendered lines (bench_lines): read if present, else written")
    parser.add_argument("--render-only", action="store_true", help="render --samples (and pages), then exit")
    parser.add_argument("--out", help="write the JSON summary here too")
    args = parser.parse_args()
    if args.tiny:
        args.model = "tiny"
    args.concurrency = [int(c) for c in args.concurrency.split(",")]

    from bench_lines import load_or_render, load_or_render_pages

    # Lines for every model; pages are built from PAGE_ROWS x PAGE_COLUMNS further lines.
    lines, render = load_or_render(args.samples, 32, 2024)
    page_pngs = load_or_render_pages(args.samples, min(args.pages, 4), 2025)[0] if args.pages else []
    if args.render_only:
        return

    from ocrtune_inference.settings import InferenceSettings
    from ocrtune_shared.store import AdapterStore

    info = versions()
    print(json.dumps(info), flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="ocrtune-bench-"))
    started = time.perf_counter()
    workload = build_workload(args, scratch)
    store_root = scratch / "store"
    store = AdapterStore(store_root)
    for name, folder in workload.adapters.items():
        workload.publish(store, name, folder)
    print(f"workload ready in {time.perf_counter() - started:.0f} s: {workload.description}; lines: {render}",
          flush=True)
    settings = InferenceSettings(
        model=str(workload.model_dir), adapter_store=str(store_root), port=_free_port(), max_loras=4, max_cpu_loras=8,
        max_lora_rank=16, max_num_seqs=max(64, *args.concurrency), max_num_batched_tokens=args.max_num_batched_tokens,
        **workload.settings,
    )
    images = {"lines": DistinctImages([png for _, png in lines])}
    if page_pngs:
        images["pages"] = DistinctImages(page_pngs)

    # `timeout` stops this script with SIGTERM: exit through the finally below, which stops the
    # service (its own session) and frees the GPU for whatever runs next.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    process = _start_server(settings, scratch / "service.log")
    print(f"service ready in {time.perf_counter() - started:.0f} s", flush=True)
    try:
        async def run() -> dict:
            import aiohttp

            started = time.perf_counter()
            # --repeats 0: no ratio runs, so no baseline engine (parity, hot-load and throughput only).
            raw = RawEngine(settings, workload.model_dir, args.max_tokens) if args.repeats else None
            print(f"raw engine ready in {time.perf_counter() - started:.0f} s", flush=True)
            connector = aiohttp.TCPConnector(limit=max(args.concurrency) * 2)
            try:
                async with aiohttp.ClientSession(f"http://127.0.0.1:{settings.port}", connector=connector,
                                                 timeout=aiohttp.ClientTimeout(total=600)) as http:
                    return await Bench(args, workload, raw, http, store, images).measure()
            finally:
                if raw is not None:
                    raw.llm.shutdown()
                    # Collected now, not at interpreter exit, where its __del__ finds vLLM half torn down.
                    raw.llm = None
                gc.collect()

        out = asyncio.run(run())
        if any("pages_error" in entry for entry in out["throughput"].values()):
            print("service log (last 60 lines):\n" + "\n".join(
                (scratch / "service.log").read_text(errors="replace").splitlines()[-60:]), flush=True)
    except BaseException:
        # The service's own account of what went wrong, before its scratch folder is lost.
        print("service log (last 60 lines):\n" + "\n".join(
            (scratch / "service.log").read_text(errors="replace").splitlines()[-60:]), flush=True)
        raise
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    summary = report(args, workload, info, out)
    if args.out:
        Path(args.out).write_text(json.dumps(summary, ensure_ascii=False, indent=1, default=str))


if __name__ == "__main__":
    main()
