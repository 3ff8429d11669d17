"""One inference server for the whole session: the tiny Qwen2-VL, a store of real trained adapters.

The server runs as ``python -m ocrtune_inference`` in its own process group (vLLM spawns
an engine core and a worker; killing the group leaves no orphan), on a free port of
127.0.0.1, with ``max_loras`` 2 and a CPU cache of 3, so that five adapters force
loads and evictions mid-traffic.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import inference_http
import pytest
from inference_http import (
    FIXED_TEXTS,
    MAX_ADAPTER_BYTES,
    MAX_CPU_LORAS,
    MAX_LORA_RANK,
    MAX_LORAS,
    MAX_UPLOAD_BYTES,
)

STARTUP_TIMEOUT_S = 300


def _fixed_spec(text: str):
    from ocrtune_devkit.adapters import AdapterSpec

    # Enough to answer the string on unseen lines every time (checked: 12/12), in ~7 s each on 2 cores.
    return AdapterSpec(fixed_text=text, steps=40, samples=4, learning_rate=3e-3)


@dataclass
class InferenceServer:
    url: str
    store_root: Path
    model_dir: Path
    adapter_dirs: dict[str, Path]
    log: Path

    def client(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)


@pytest.fixture(scope="session")
def trained_adapters(tiny_model_dir: Path) -> dict[str, Path]:
    from ocrtune_devkit.adapters import build_tiny_adapter

    return {name: build_tiny_adapter(_fixed_spec(text), tiny_model_dir) for name, text in FIXED_TEXTS.items()}


@pytest.fixture(scope="session")
def server(tmp_path_factory, tiny_model_dir: Path, trained_adapters: dict[str, Path]):
    from ocrtune_devkit.adapters import publish_tiny_adapter
    from ocrtune_devkit.processes import ServiceExited, free_port, start_service, wait_until_ready
    from ocrtune_shared.store import AdapterStore

    root = tmp_path_factory.mktemp("adapter-store")
    store = AdapterStore(root)
    for name, folder in trained_adapters.items():
        publish_tiny_adapter(store, name, folder, str(tiny_model_dir))
    port = free_port()
    log = root.parent / "inference-server.log"
    env = {
        **os.environ,
        "OCRTUNE_INFERENCE_MODEL": str(tiny_model_dir),
        "OCRTUNE_INFERENCE_ADAPTER_STORE": str(root),
        "OCRTUNE_INFERENCE_HOST": "127.0.0.1",
        "OCRTUNE_INFERENCE_PORT": str(port),
        "OCRTUNE_INFERENCE_MAX_LORAS": str(MAX_LORAS),
        "OCRTUNE_INFERENCE_MAX_CPU_LORAS": str(MAX_CPU_LORAS),
        "OCRTUNE_INFERENCE_MAX_LORA_RANK": str(MAX_LORA_RANK),
        "OCRTUNE_INFERENCE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "OCRTUNE_INFERENCE_MAX_ADAPTER_BYTES": str(MAX_ADAPTER_BYTES),
        "OCRTUNE_INFERENCE_MAX_IMAGE_PIXELS": str(20_000_000),
        "OCRTUNE_INFERENCE_MAX_MODEL_LEN": "1024",
        "OCRTUNE_INFERENCE_DTYPE": "float32",
    }
    url = f"http://127.0.0.1:{port}"
    service = start_service("inference", [sys.executable, "-m", "ocrtune_inference"], url=url, env=env, log=log)
    try:
        try:
            wait_until_ready([service], timeout=STARTUP_TIMEOUT_S, poll_s=1)
        except (ServiceExited, TimeoutError) as exc:
            pytest.fail(str(exc))
        yield InferenceServer(url, root, tiny_model_dir, trained_adapters, log)
    finally:
        # The engine core and workers too, whatever state they are in.
        service.stop(grace_s=20)


@pytest.fixture(scope="session")
def client(server: InferenceServer):
    with server.client() as http:
        yield http


@pytest.fixture(scope="session")
def line_images() -> list[bytes]:
    """Line images none of the adapters saw in training."""
    from ocrtune_devkit.synthetic import make_samples

    return [s.png for s in make_samples(12, seed=4321)]


@pytest.fixture(scope="session")
def base_answers(client: httpx.Client, line_images: list[bytes]) -> dict[int, str]:
    """The base model's answer to each image, asked alone, one at a time."""
    answers = {}
    for index, png in enumerate(line_images):
        response = inference_http.ocr(client, png)
        assert response.status_code == 200, response.text
        answers[index] = response.json()["text"]
    return answers
