"""Session-wide fixtures: local model checkpoints and synthetic data, built once.

Nothing here downloads anything: checkpoints are built from configs with random
weights into a cache folder (OCRTUNE_MODEL_CACHE, default ~/.cache/ocrtune/models),
reused across runs because the folder name carries a digest of the spec.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# vLLM's CPU backend reserves this many GiB of KV cache per engine; its default wants far
# more than these 24 GiB machines can spare when several engines run in one session.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[str]:
    """moto's S3 server on a free 127.0.0.1 port; yields its endpoint URL (credentials: any)."""
    from ocrtune_devkit.processes import free_port, start_service, wait_until_ready

    moto = Path(sys.executable).parent / "moto_server"
    if not moto.exists():
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = start_service("moto S3", [str(moto), "-H", "127.0.0.1", "-p", str(port)], url=url, env=os.environ,
                            log=None)
    try:
        # moto has no /readyz; its S3 ListBuckets at / answers 200 once it serves.
        wait_until_ready([service], timeout=30, poll_s=0.2, ready_path="/")
        yield url
    finally:
        service.stop(grace_s=0)


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    from ocrtune_devkit.tiny_models import build_tiny_qwen2_vl

    return build_tiny_qwen2_vl()


@pytest.fixture(scope="session")
def synthetic_samples():
    from ocrtune_devkit.synthetic import make_samples

    return make_samples(16, seed=1234)


@dataclass
class DemoRun:
    """One run of the main-job demo (``python -m ocrtune_devkit.demo``) and the services it left up."""

    returncode: int
    stdout: str
    stderr: str
    summary: dict | None
    workdir: Path
    seconds: float

    @property
    def inference_url(self) -> str:
        return self.summary["services"]["inference"]["url"]

    @property
    def trainer_url(self) -> str:
        return self.summary["services"]["trainer"]["url"]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """Runs the demo once per session, as a user would; the e2e and CLI tests share its services.

    The demo leaves both services running (that is part of what it promises); they are
    stopped with the demo's own ``stop`` command at the end of the session.
    """
    workdir = tmp_path_factory.mktemp("demo")
    summary_path = workdir / "test-summary.json"
    demo = [sys.executable, "-m", "ocrtune_devkit.demo", "--workdir", str(workdir)]
    start = time.monotonic()
    done = subprocess.run(
        [*demo, "--inference-port", "0", "--trainer-port", "0", "--json-summary", str(summary_path)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    seconds = time.monotonic() - start
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    try:
        yield DemoRun(done.returncode, done.stdout, done.stderr, summary, workdir, seconds)
    finally:
        subprocess.run([*demo[:3], "stop", "--workdir", str(workdir)], capture_output=True, timeout=120)
