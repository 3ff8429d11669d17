"""The web consoles in headless Chromium, against both services running for real.

One inference service (the tiny random Qwen2-VL on vLLM's CPU engine) and one trainer
(small real training on the same checkpoint) share an adapter store, with API keys on
both, wired as a deployment wires them: the trainer knows the inference URL and key.
The store starts with one adapter whose answer is known (it was trained to answer
"一二三四五" for any line), so the playground has two different texts to compare.

The browser is Debian's chromium driven by Playwright (no browser download): set up by
``scripts/setup.sh --dev``. Screenshots go to var/test-artifacts/ui/ (printed at the end).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from trainer.conftest import TrainerService
from trainer.conftest import start_service as start_trainer

from ocrtune_devkit import processes
from ocrtune_devkit.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "test-artifacts" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
# Chromium's background connections (updates, sync, safe browsing) fail on a closed network and slow it down.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INFERENCE_KEY = "ui-inference-key"
TRAINER_KEY = "ui-trainer-key"
FIXED_ADAPTER = "fixed-yi"
FIXED_TEXT = "一二三四五"
INFERENCE_STARTUP_S = 300
LAPTOP_SCREENS = [(1366, 768), (1280, 800)]


@dataclass
class Console:
    inference_url: str
    trainer: TrainerService
    store: Path
    model_dir: Path
    inference_log: Path

    @property
    def trainer_url(self) -> str:
        return self.trainer.url

    def inference(self) -> httpx.Client:
        return httpx.Client(base_url=self.inference_url, timeout=120, headers={"Authorization": f"Bearer {INFERENCE_KEY}"})

    def trainer_client(self) -> httpx.Client:
        return httpx.Client(base_url=self.trainer.url, timeout=60, headers={"Authorization": f"Bearer {TRAINER_KEY}"})


@pytest.fixture(scope="session")
def console(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Console]:
    from ocrtune_devkit.adapters import AdapterSpec, build_tiny_adapter, publish_tiny_adapter
    from ocrtune_shared.store import AdapterStore

    root = tmp_path_factory.mktemp("console")
    trainer_dir = root / "trainer"
    store = trainer_dir / "adapters"  # where start_service points the trainer's store
    # The spec tests/inference trains for its "a1" adapter: same digest, so one cached training serves both.
    fixed = build_tiny_adapter(AdapterSpec(fixed_text=FIXED_TEXT, steps=40, samples=4, learning_rate=3e-3), tiny_model_dir)
    publish_tiny_adapter(AdapterStore(store), FIXED_ADAPTER, fixed, str(tiny_model_dir))
    port = free_port()
    inference_url = f"http://127.0.0.1:{port}"
    log = root / "inference.log"
    env = {
        **os.environ,
        "OCRTUNE_INFERENCE_MODEL": str(tiny_model_dir),
        "OCRTUNE_INFERENCE_ADAPTER_STORE": str(store),
        "OCRTUNE_INFERENCE_HOST": "127.0.0.1",
        "OCRTUNE_INFERENCE_PORT": str(port),
        "OCRTUNE_INFERENCE_API_KEYS": INFERENCE_KEY,
        "OCRTUNE_INFERENCE_MAX_MODEL_LEN": "1024",
        "OCRTUNE_INFERENCE_DTYPE": "float32",
    }
    # Started first: vLLM takes longest, and the trainer starts while it loads.
    inference = processes.start_service("inference", [sys.executable, "-m", "ocrtune_inference"], url=inference_url,
                                        env=env, log=log)
    trainer = None
    try:
        trainer = start_trainer(
            trainer_dir,
            base_model=tiny_model_dir,
            data_roots=[],  # the console's datasets arrive through POST /datasets
            extra_env={
                "OCRTUNE_TRAINER_API_KEYS": TRAINER_KEY,
                "OCRTUNE_TRAINER_INFERENCE_URL": inference_url,
                "OCRTUNE_TRAINER_INFERENCE_API_KEY": INFERENCE_KEY,
            },
        )
        try:
            processes.wait_until_ready([inference], timeout=INFERENCE_STARTUP_S, poll_s=0.5)
        except (processes.ServiceExited, TimeoutError) as exc:
            pytest.fail(str(exc))
        yield Console(inference_url, trainer, store, tiny_model_dir, log)
    finally:
        if trainer is not None:
            processes.stop_process_group(trainer.process, grace_s=10)
        inference.stop(grace_s=20)  # the engine core and workers too


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's chromium, headless, through Playwright's protocol driver (Playwright's own browsers are never fetched)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is not installed; scripts/setup.sh --dev installs it (Debian's chromium)")
    from playwright import sync_api  # requirements/dev.txt
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (its own sessionStorage, so no API key carried over) at a laptop's 1366x768."""
    context = browser.new_context(viewport={"width": 1366, "height": 768}, device_scale_factor=1)
    context.set_default_timeout(30_000)
    page = context.new_page()
    watch_script_errors(page)
    yield page
    context.close()


def watch_script_errors(page) -> list[str]:  # type: ignore[no-untyped-def]
    """Collect the page's uncaught script errors in ``page.script_errors`` (tests expect none)."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Chromium also logs every 4xx answer as a console error; those are answers the tests provoke.
    page.on(
        "console",
        lambda msg: errors.append(msg.text)
        if msg.type == "error" and not msg.text.startswith("Failed to load resource")
        else None,
    )
    page.script_errors = errors
    return errors


_screenshots: list[Path] = []


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    return ARTIFACTS


def screenshot(page, name: str, *, full_page: bool = False) -> Path:  # type: ignore[no-untyped-def]
    """Save the page as var/test-artifacts/ui/<name>.png (listed at the end of the run)."""
    path = ARTIFACTS / f"{name}.png"
    if full_page:
        page.evaluate("window.scrollTo(0, 0)")  # else the sticky header is drawn where the page was scrolled to
    page.screenshot(path=str(path), full_page=full_page)
    _screenshots.append(path)
    return path


def layout(page, **selectors: str) -> dict:  # type: ignore[no-untyped-def]
    """The page's scroll width (``scroll``) and, per keyword, the bounding box of that CSS selector."""
    return page.evaluate(
        """(selectors) => ({scroll: document.documentElement.scrollWidth, ...Object.fromEntries(
            Object.entries(selectors).map(([name, s]) => [name, document.querySelector(s).getBoundingClientRect().toJSON()]))})""",
        selectors,
    )


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if _screenshots:
        terminalreporter.write_line(f"web console screenshots ({len(_screenshots)}) in {ARTIFACTS}:")
        for path in _screenshots:
            terminalreporter.write_line(f"  {path.name}")


@pytest.fixture(scope="session")
def line_png(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A synthetic line image none of the adapters trained on, and its true text."""
    from ocrtune_devkit.synthetic import make_samples

    sample = make_samples(1, seed=2468)[0]
    path = tmp_path_factory.mktemp("line") / "line.png"
    path.write_bytes(sample.png)
    return path, sample.text
