"""Adapter lifecycle over HTTP: hot-load, LRU over slots and cache, new versions, list/load/unload, refusals."""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
from pathlib import Path

import httpx
import pytest
from inference_http import FIXED_TEXTS, MAX_LORA_RANK, aocr, ocr
from safetensors.torch import load_file, save_file

from ocrtune_devkit.adapters import publish_tiny_adapter
from ocrtune_shared.store import AdapterStore


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_interleaved_traffic_over_more_adapters_than_slots(server, client, line_images, base_answers) -> None:
    """5 adapters, 2 device slots, CPU cache of 3: loads and evictions happen while requests run."""
    rng = random.Random(7)
    names: list[str | None] = [*FIXED_TEXTS, None]

    async def round_(jobs):
        async with httpx.AsyncClient(base_url=server.url, timeout=180) as http:
            return await asyncio.gather(*(aocr(http, line_images[i], a) for a, i in jobs))

    for _ in range(3):
        jobs = [(names[k % len(names)], rng.randrange(len(line_images))) for k in range(30)]
        rng.shuffle(jobs)
        wrong = []
        for (adapter, index), response in zip(jobs, asyncio.run(round_(jobs)), strict=True):
            assert response.status_code == 200, response.text
            expected = FIXED_TEXTS[adapter] if adapter else base_answers[index]
            if response.json()["text"] != expected:
                wrong.append((adapter, index, response.json()["text"]))
        assert not wrong, f"requests decoded with another adapter's weights: {wrong}"

    listing = client.get("/adapters").json()["adapters"]
    states = {a["name"]: a["state"] for a in listing}
    assert sum(state != "stored" for state in states.values()) <= 3, states
    metrics = client.get("/metrics").text
    assert _metric(metrics, "ocrtune_adapter_hot_loads_total") >= 5
    assert _metric(metrics, "ocrtune_adapter_evictions_total") >= 1


def test_new_adapter_and_new_version_served_without_restart(server, client, line_images) -> None:
    store = AdapterStore(server.store_root)
    assert ocr(client, line_images[0], "evolving").status_code == 404
    publish_tiny_adapter(store, "evolving", server.adapter_dirs["a0"], str(server.model_dir))
    first = ocr(client, line_images[0], "evolving")
    assert first.status_code == 200 and first.json()["text"] == FIXED_TEXTS["a0"]
    publish_tiny_adapter(store, "evolving", server.adapter_dirs["a1"], str(server.model_dir))
    latest = ocr(client, line_images[0], "evolving").json()
    assert (latest["adapter"], latest["text"]) == ("evolving@2", FIXED_TEXTS["a1"])
    pinned = ocr(client, line_images[0], "evolving@1").json()
    assert (pinned["adapter"], pinned["text"]) == ("evolving@1", FIXED_TEXTS["a0"])
    listed = {(a["name"], a["version"]): a["latest"] for a in client.get("/adapters").json()["adapters"]}
    assert listed[("evolving", 1)] is False and listed[("evolving", 2)] is True


def test_load_list_unload(client, line_images) -> None:
    loaded = client.post("/adapters/a4/load")
    assert loaded.status_code == 200 and loaded.json()["adapter"] == "a4@1"
    state = {a["name"]: a["state"] for a in client.get("/adapters").json()["adapters"]}
    assert state["a4"] in ("device", "cpu")
    unloaded = client.delete("/adapters/a4")
    assert unloaded.status_code == 200 and unloaded.json()["unloaded"] == ["a4@1"]
    state = {a["name"]: a["state"] for a in client.get("/adapters").json()["adapters"]}
    assert state["a4"] == "stored"
    assert ocr(client, line_images[1], "a4").json()["text"] == FIXED_TEXTS["a4"]
    assert client.delete("/adapters/nobody").status_code == 404


# --- refusals: each a 4xx ErrorResponse naming the problem, and the service keeps serving ---


def _copy(folder: Path, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(folder, target)
    return target


@pytest.fixture(scope="module")
def bad_adapters(server, tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("bad-adapters")
    store = AdapterStore(server.store_root)
    source = server.adapter_dirs["a0"]
    publish_tiny_adapter(store, "other-base", source, "Qwen/Qwen2-VL-2B-Instruct")
    publish_tiny_adapter(store, "other-family", source, str(server.model_dir), model_family="deepseek_ocr2")

    wide = _copy(source, tmp, "wide")
    config = json.loads((wide / "adapter_config.json").read_text())
    config["r"] = MAX_LORA_RANK * 2
    (wide / "adapter_config.json").write_text(json.dumps(config))
    publish_tiny_adapter(store, "too-wide", wide, str(server.model_dir), rank=MAX_LORA_RANK * 2)

    # Named the way an adapter trained on another layout would be: vLLM would load it and ignore every weight.
    unmapped = _copy(source, tmp, "unmapped")
    tensors = load_file(unmapped / "adapter_model.safetensors")
    save_file(
        {k.replace("model.language_model.", "model.text_decoder."): v for k, v in tensors.items()},
        unmapped / "adapter_model.safetensors",
    )
    publish_tiny_adapter(store, "unmapped", unmapped, str(server.model_dir))

    tampered = publish_tiny_adapter(store, "tampered", source, str(server.model_dir))
    weights = tampered.path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-16])
    return {}


@pytest.mark.parametrize(
    ("reference", "status", "code", "says"),
    [
        ("nobody", 404, "adapter_not_found", "not in the store"),
        ("a0@9", 404, "adapter_not_found", "no version 9"),
        ("../a0", 422, "invalid_request", ".."),
        ("a0@zero", 422, "invalid_request", "positive integer"),
        ("other-base", 409, "adapter_incompatible", "Qwen/Qwen2-VL-2B-Instruct"),
        ("other-family", 409, "adapter_incompatible", "deepseek_ocr2"),
        ("too-wide", 422, "adapter_incompatible", f"rank {MAX_LORA_RANK * 2}"),
        ("unmapped", 422, "adapter_incompatible", "model.text_decoder.layers"),
        ("tampered", 422, "adapter_invalid", "checksum"),
    ],
)
def test_adapter_refused(client, bad_adapters, line_images, base_answers, reference, status, code, says) -> None:
    response = ocr(client, line_images[0], reference)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and says in error["message"], error
    if "/" not in reference:
        loaded = client.post(f"/adapters/{reference}/load")
        assert loaded.status_code == status and loaded.json()["error"]["code"] == code
    assert ocr(client, line_images[0]).json()["text"] == base_answers[0]
    assert ocr(client, line_images[0], "a2").json()["text"] == FIXED_TEXTS["a2"]
