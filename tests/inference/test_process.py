"""The service leaves no vLLM process behind when it is killed (kill -9 runs no cleanup)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest


def _group(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def test_kill_9_leaves_no_engine_orphans(tiny_model_dir, tmp_path) -> None:
    port = 20000 + os.getpid() % 20000
    env = {**os.environ, "OCRTUNE_INFERENCE_MODEL": str(tiny_model_dir), "OCRTUNE_INFERENCE_PORT": str(port),
           "OCRTUNE_INFERENCE_ADAPTER_STORE": str(tmp_path), "OCRTUNE_INFERENCE_MAX_MODEL_LEN": "1024",
           "OCRTUNE_INFERENCE_DTYPE": "float32"}
    process = subprocess.Popen([sys.executable, "-m", "ocrtune_inference"], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, "the service exited during start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("service not ready")
            time.sleep(1)
        assert len(_group(process.pid)) >= 3, "expected the API process, the engine core and a worker"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.monotonic() + 30
        while _group(process.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        # The resource tracker of multiprocessing exits on its own once its pipe closes.
        left = [open(f"/proc/{p}/cmdline").read().replace("\0", " ")[:80] for p in _group(process.pid)]
        assert not left, f"orphans after kill -9 of the service: {left}"
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
