"""vLLM's OpenAI-server routes for models and adapters, driven by the ``openai`` package where it has them."""

from __future__ import annotations

import base64

import openai
import pytest
from inference_http import FIXED_TEXTS


@pytest.fixture(scope="module")
def oai(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_models_list_base_then_adapters_with_parent(oai, server) -> None:
    models = oai.models.list().data
    base = str(server.model_dir)
    assert models[0].id == base and models[0].parent is None
    adapters = {m.id: m for m in models[1:]}
    assert set(FIXED_TEXTS) <= set(adapters)
    assert all(m.parent == base and m.owned_by == "ocrtune" for m in adapters.values())
    assert adapters["a1"].root == "a1@1"


def test_load_then_chat_by_listed_id_then_unload(oai, client, line_images) -> None:
    loaded = client.post("/v1/load_lora_adapter", json={"lora_name": "a3"})
    assert loaded.status_code == 200 and loaded.text == "Success: LoRA adapter 'a3@1' added successfully."
    url = "data:image/png;base64," + base64.b64encode(line_images[1]).decode()
    answer = oai.chat.completions.create(
        model="a3", max_tokens=16,
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
    )
    assert answer.choices[0].message.content == FIXED_TEXTS["a3"]
    removed = client.post("/v1/unload_lora_adapter", json={"lora_name": "a3"})
    assert removed.status_code == 200 and "removed successfully" in removed.text
    again = client.post("/v1/unload_lora_adapter", json={"lora_name": "a3"})
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "adapter_not_found" and again.json()["error"]["where"] == "lora_name"


@pytest.mark.parametrize(
    ("body", "status", "where"),
    [
        ({"lora_name": "a0", "lora_path": "/etc"}, 422, "lora_path"),
        ({"lora_name": "nobody"}, 404, "nobody"),
        ({"lora_name": "a0", "surprise": 1}, 422, "surprise"),
        ({}, 422, "lora_name"),
    ],
)
def test_load_refusals_name_the_problem(client, body, status, where) -> None:
    response = client.post("/v1/load_lora_adapter", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert where in (error.get("where") or "") + error["message"]
    assert client.get("/readyz").status_code == 200


def _image_message(png: bytes) -> list[dict]:
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]


def test_stream_follows_the_openai_chunks(oai, line_images) -> None:
    stream = oai.chat.completions.create(model="a0", max_tokens=16, stream=True,
                                         stream_options={"include_usage": True}, messages=_image_message(line_images[2]))
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == FIXED_TEXTS["a0"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"temperature": 0.7}, "temperature"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),  # not implemented: refused, not ignored
        ({"stream_options": {"include_usage": True}}, "stream_options"),  # without stream
    ],
)
def test_unsupported_chat_fields_are_refused(client, line_images, extra, where) -> None:
    body = {"model": "a0", "max_tokens": 4, "messages": _image_message(line_images[0]), **extra}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert where in (error.get("where") or "") + error["message"]
