"""Inference service benchmark: ratios against raw AsyncLLM measured in the same run.

Prints (targets.md):
- HTTP overhead: images/s through ``POST /ocr`` at concurrency 16 / raw ``AsyncLLM`` on the
  same images and prompts, same engine settings (goal >= 0.95); against two baselines: images
  decoded once up front (the engine alone), and each PNG decoded per request (what a caller of
  raw AsyncLLM holding image files does, as the service must);
- mixed adapters: images/s with requests spread over 4 adapters / all on one adapter (goal >= 0.9);
- hot-load: first request to a freshly published adapter minus a warm request to it (goal <= 1 s).

Each ratio is the median over ``--repeats`` pairs of runs made back to back. The service (a subprocess) and the raw engine
(in this process) are both up; their runs alternate, one at a time, so that the load
others put on a shared machine falls on each alike. The HTTP client (aiohttp) runs in this process: its cost counts against the service, as it would
for any client on the same machine.

    .venv/bin/python bench/inference_bench.py [--requests 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CONCURRENCY = 16
MAX_TOKENS = 16
ADAPTER_TEXTS = {"a0": "甲乙丙丁", "a1": "一二三四五", "a2": "日月年", "a3": "上下左右中", "a4": "金额合计元"}


def _settings(model_dir: Path, store: Path, port: int):
    from ocrtune_inference.settings import InferenceSettings

    return InferenceSettings(
        model=str(model_dir), adapter_store=str(store), port=port, max_loras=4, max_cpu_loras=8,
        max_lora_rank=16, dtype="float32", max_model_len=1024, max_num_seqs=64,
    )


async def _pool(count: int, worker) -> float:
    """Run ``worker(i)`` for i < count with CONCURRENCY in flight; return items per second."""
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
    await asyncio.gather(*(drain() for _ in range(CONCURRENCY)))
    return count / (time.perf_counter() - started)


class RawEngine:
    """The baseline: the same engine settings and prompts, called in-process with no HTTP."""

    def __init__(self, settings, model_dir: Path, images) -> None:
        from vllm import SamplingParams
        from vllm.v1.engine.async_llm import AsyncLLM

        from ocrtune_inference.engine import engine_args
        from ocrtune_inference.families import family_for
        from ocrtune_shared.ocr import OCROptions

        self.family = family_for(model_dir)
        self.options = OCROptions()
        self.llm = AsyncLLM.from_engine_args(engine_args(settings, str(model_dir), self.family.engine_kwargs()))
        self.prompts = [self.family.prompt(image, self.options).as_vllm() for image in images]
        self.params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS)
        self.ids = iter(range(10**9))

    async def run(self, count: int, pngs: list[bytes] | None = None) -> float:
        """Images/s; with ``pngs``, each request first decodes its PNG, as any caller holding image files must."""
        import io

        from PIL import Image

        async def one(i: int) -> None:
            if pngs is None:
                prompt = self.prompts[i % len(self.prompts)]
            else:
                image = Image.open(io.BytesIO(pngs[i % len(pngs)])).convert("RGB")
                prompt = self.family.prompt(image, self.options).as_vllm()
            async for _ in self.llm.generate(prompt, self.params, f"raw-{next(self.ids)}"):
                pass

        return await _pool(count, one)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(settings) -> subprocess.Popen:
    import httpx

    env = {**os.environ, **{f"OCRTUNE_INFERENCE_{k.upper()}": str(v) for k, v in settings.model_dump().items()
                            if v is not None and not isinstance(v, list)}}
    process = subprocess.Popen([sys.executable, "-m", "ocrtune_inference"], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{settings.port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError("service not ready in 300 s")


async def _measure(raw: RawEngine, settings, store, model_dir: Path, pngs, adapter_dirs, repeats: int,
                   count: int) -> dict[str, list[float]]:
    import aiohttp

    from ocrtune_devkit.adapters import publish_tiny_adapter

    url = f"http://127.0.0.1:{settings.port}"
    results: dict[str, list[float]] = {"raw": [], "raw_png": [], "base": [], "base2": [], "one": [], "mixed": [],
                                       "hot_extra": []}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as http:

        async def post(i: int, adapter: str | None) -> None:
            form = aiohttp.FormData()
            form.add_field("file", pngs[i % len(pngs)], filename="p.png", content_type="image/png")
            form.add_field("max_tokens", str(MAX_TOKENS))
            headers = {"X-Adapter": adapter} if adapter else {}
            async with http.post("/ocr", data=form, headers=headers) as response:
                body = await response.json()
                assert response.status == 200, body
            if adapter and not adapter.startswith("hot-"):
                assert body["text"] == ADAPTER_TEXTS[adapter], body

        mixed = ["a0", "a1", "a2", "a3"]
        for name in mixed:
            async with http.post(f"/adapters/{name}/load") as response:
                assert response.status == 200
        await raw.run(CONCURRENCY)  # warm-up
        await _pool(CONCURRENCY, lambda i: post(i, None))
        await _pool(CONCURRENCY, lambda i: post(i, mixed[i % 4]))
        # Interleaved, so that the load other work puts on the machine falls on every variant alike.
        # Each figure is also taken as a ratio of two runs back to back (order alternating), so
        # that a burst of someone else's work spoils one pair, not the whole comparison.
        for r in range(repeats):
            pairs = [("raw", lambda: raw.run(count)), ("base", lambda: _pool(count, lambda i: post(i, None))),
                     ("one", lambda: _pool(count, lambda i: post(i, "a0"))),
                     ("mixed", lambda: _pool(count, lambda i: post(i, mixed[i % 4]))),
                     ("raw_png", lambda: raw.run(count, pngs)), ("base2", lambda: _pool(count, lambda i: post(i, None)))]
            for first, second in (pairs[0:2], pairs[2:4], pairs[4:6]):
                for key, run in ((first, second) if r % 2 == 0 else (second, first)):
                    results[key].append(await run())
        for k in range(repeats):
            publish_tiny_adapter(store, f"hot-{k}", adapter_dirs["a4"], str(model_dir))
            started = time.perf_counter()
            await post(k, f"hot-{k}")
            cold = time.perf_counter() - started
            warm = []
            for j in range(3):
                started = time.perf_counter()
                await post(k + j + 1, f"hot-{k}")
                warm.append(time.perf_counter() - started)
            results["hot_extra"].append(cold - statistics.median(warm))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=64, help="images per throughput run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="the 1 M-parameter random test model instead of the reader")
    args = parser.parse_args()

    from ocrtune_devkit.adapters import AdapterSpec, build_tiny_adapter, publish_tiny_adapter
    from ocrtune_devkit.reader import reader_checkpoint
    from ocrtune_devkit.synthetic import SCAN, make_samples, make_styled_samples
    from ocrtune_devkit.tiny_models import build_tiny_qwen2_vl
    from ocrtune_shared.store import AdapterStore

    # The reader by default: a model that reads, so decode lengths are those of real OCR.
    model_dir = build_tiny_qwen2_vl() if args.tiny else reader_checkpoint()
    model_name = "tiny random Qwen2-VL" if args.tiny else "reader-zh (8 M Qwen2-VL)"
    # The reader reads what it sees, so teaching it one fixed answer for any line takes longer
    # than the random tiny model (40 steps left "一二四五" for "一二三四五", 120 did not stop).
    steps, samples, rate = (40, 4, 3e-3) if args.tiny else (300, 8, 5e-3)
    specs = {
        n: AdapterSpec(fixed_text=t, steps=steps, samples=samples, learning_rate=rate) for n, t in ADAPTER_TEXTS.items()
    }
    adapter_dirs = {n: build_tiny_adapter(spec, model_dir) for n, spec in specs.items()}
    samples = make_samples(32, seed=2024) if args.tiny else make_styled_samples(32, SCAN, seed=2024)
    pngs = [s.png for s in samples]
    images = [s.image() for s in samples]
    store_root = Path(tempfile.mkdtemp(prefix="ocrtune-bench-store-"))
    store = AdapterStore(store_root)
    for name, folder in adapter_dirs.items():
        publish_tiny_adapter(store, name, folder, str(model_dir))
    settings = _settings(model_dir, store_root, _free_port())

    process = _start_server(settings)
    try:
        async def run() -> dict[str, list[float]]:
            raw = RawEngine(settings, model_dir, images)
            try:
                return await _measure(raw, settings, store, model_dir, pngs, adapter_dirs, args.repeats, args.requests)
            finally:
                raw.llm.shutdown()
                # Collected now, not at interpreter exit, where its __del__ finds vLLM half torn down.
                raw.llm = None
                gc.collect()

        results = asyncio.run(run())
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)

    med = statistics.median
    print(f"machine: {os.cpu_count()} CPUs, vLLM CPU engine, {model_name}, {args.requests} images x {args.repeats} repeats, "
          f"concurrency {CONCURRENCY}, max_tokens {MAX_TOKENS}")
    print(f"raw AsyncLLM images/s       : {med(results['raw']):7.2f}  runs {[round(x, 2) for x in results['raw']]}")
    print(f"raw AsyncLLM, PNG decoded   : {med(results['raw_png']):7.2f}  runs {[round(x, 2) for x in results['raw_png']]}")
    print(f"HTTP /ocr base images/s     : {med(results['base']):7.2f}  runs {[round(x, 2) for x in results['base'] + results['base2']]}")
    print(f"HTTP /ocr one adapter       : {med(results['one']):7.2f}  runs {[round(x, 2) for x in results['one']]}")
    print(f"HTTP /ocr 4 adapters mixed  : {med(results['mixed']):7.2f}  runs {[round(x, 2) for x in results['mixed']]}")
    http_raw = [h / r for h, r in zip(results["base"], results["raw"], strict=True)]
    mixed_one = [m / o for m, o in zip(results["mixed"], results["one"], strict=True)]
    http_png = [h / r for h, r in zip(results["base2"], results["raw_png"], strict=True)]
    print(f"RATIO http/raw (goal >= 0.95)          : {med(http_raw):.3f}  pairs {[round(x, 2) for x in http_raw]}")
    print(f"RATIO http/raw decoding its PNGs       : {med(http_png):.3f}  pairs {[round(x, 2) for x in http_png]}")
    print(f"RATIO mixed/one adapter (goal >= 0.9)  : {med(mixed_one):.3f}  pairs {[round(x, 2) for x in mixed_one]}")
    print(f"HOT-LOAD extra s, first vs warm (<= 1) : {med(results['hot_extra']):.3f}  runs "
          f"{[round(x, 3) for x in results['hot_extra']]}")


if __name__ == "__main__":
    main()
