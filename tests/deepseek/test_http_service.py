"""DeepSeek-OCR-2 through the inference service over HTTP: family, guard, shim, modes, adapter import.

Slow (one more full-size-tower engine in a server process): run with
``python -m pytest -m slow tests/deepseek/test_http_service.py`` (~3-5 min on 2 cores).
A notebook-style adapter (attention + dense/shared MLP, saved by peft on the native checkpoint)
is imported with ``ocrtune_shared.adapter_import`` and served; the same adapter published
unconverted is refused with the modules named instead of being served with no effect.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

import httpx
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def store_root(reduced_deepseek_ocr2, tmp_path_factory):
    from ocrtune_devkit.deepseek import make_random_adapter
    from ocrtune_shared.adapter_import import import_peft_adapter
    from ocrtune_shared.adapters import AdapterManifest, ServingLayout
    from ocrtune_shared.store import AdapterStore

    root = tmp_path_factory.mktemp("ds-store")
    peft_dir = make_random_adapter(reduced_deepseek_ocr2.native, root.parent / "nb", experts=False, seed=5)
    store = AdapterStore(root)
    import_peft_adapter(store, peft_dir, name="nb", base_model=str(reduced_deepseek_ocr2.vllm), model_family="deepseek_ocr2")

    def raw(staging):
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy2(peft_dir / name, staging / name)
        return AdapterManifest(name="raw", version=1, base_model=str(reduced_deepseek_ocr2.vllm),
                               model_family="deepseek_ocr2", rank=16, alpha=16, target_modules=["q_proj"],
                               serving_layout=ServingLayout.peft, created_at=datetime.now(timezone.utc))

    store.publish("raw", raw)
    return root


@pytest.fixture(scope="module")
def server_url(reduced_deepseek_ocr2, store_root):
    port = _free_port()
    env = {
        **os.environ,
        "OCRTUNE_INFERENCE_MODEL": str(reduced_deepseek_ocr2.vllm),
        "OCRTUNE_INFERENCE_ADAPTER_STORE": str(store_root),
        "OCRTUNE_INFERENCE_PORT": str(port),
        "OCRTUNE_INFERENCE_MAX_LORAS": "2",
        "OCRTUNE_INFERENCE_MAX_MODEL_LEN": "2048",
        "OCRTUNE_INFERENCE_MAX_NUM_SEQS": "4",
        "OCRTUNE_INFERENCE_DTYPE": "float32",
    }
    log = store_root.parent / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "ocrtune_inference"], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 400
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def image_b64() -> str:
    from ocrtune_devkit.synthetic import make_samples

    return base64.b64encode(make_samples(1, seed=3)[0].png).decode()


def test_deepseek_over_http(server_url, image_b64):
    with httpx.Client(base_url=server_url, timeout=600) as client:
        body = {"image_base64": image_b64, "max_tokens": 8}
        base = client.post("/ocr", json=body)
        assert base.status_code == 200, base.text
        adapted = client.post("/ocr", json=body, headers={"X-Adapter": "nb"})
        assert adapted.status_code == 200, adapted.text
        assert adapted.json()["adapter"] == "nb@1"
        assert adapted.json()["text"] != base.json()["text"]
        # The unconverted adapter would load and change nothing: refused, naming the weights.
        raw = client.post("/ocr", json=body, headers={"X-Adapter": "raw"})
        assert raw.status_code == 422 and "language_model" in json.dumps(raw.json()), raw.text
        # Resolution modes per request; one v2 does not have is refused, the engine keeps serving.
        assert client.post("/ocr", json={**body, "resolution": "base"}).status_code == 200
        tiny = client.post("/ocr", json={**body, "resolution": "tiny"})
        assert tiny.status_code == 422 and "tiny" in tiny.text, tiny.text
        again = client.post("/ocr", json=body)
        assert again.status_code == 200 and again.json()["text"] == base.json()["text"]
