"""vLLM's OpenAI-server routes for models and adapters, driven by the ``openai`` package where it has them."""

from __future__ import annotations

import base64

import openai
import pytest
from inference_http import FIXED_TEXTS, ocr


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
        ({"presence_penalty": 0.5}, "presence_penalty"),  # not implemented: refused, not ignored
        ({"top_logprobs": 3}, "top_logprobs"),  # without logprobs
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),  # without stream
    ],
)
def test_unsupported_chat_fields_are_refused(client, line_images, extra, where) -> None:
    body = {"model": "a0", "max_tokens": 4, "messages": _image_message(line_images[0]), **extra}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert where in (error.get("where") or "") + error["message"]


def _check_greedy_logprobs(tokens, text: str, top: int) -> None:
    """Greedy decoding: each chosen token is the most likely one, and the tokens spell the answer.

    The last token may be the end-of-turn token, which has a log-probability but no text.
    """
    spelled = "".join(t.token for t in tokens)
    assert spelled == text or (spelled.startswith(text) and tokens[-1].token == spelled[len(text):]), (spelled, text)
    for t in tokens:
        assert t.logprob <= 0 and len(t.top_logprobs) == top
        assert t.top_logprobs[0].token == t.token and abs(t.top_logprobs[0].logprob - t.logprob) < 1e-4
        assert [a.logprob for a in t.top_logprobs] == sorted((a.logprob for a in t.top_logprobs), reverse=True)
        assert bytes(t.bytes) == t.token.encode()


def test_chat_logprobs_follow_the_openai_types(oai, line_images) -> None:
    answer = oai.chat.completions.create(model="a1", max_tokens=16, logprobs=True, top_logprobs=3,
                                         messages=_image_message(line_images[3]))
    content = answer.choices[0].message.content
    assert content == FIXED_TEXTS["a1"]
    tokens = answer.choices[0].logprobs.content
    _check_greedy_logprobs(tokens, content, 3)
    plain = oai.chat.completions.create(model="a1", max_tokens=16, messages=_image_message(line_images[3]))
    assert plain.choices[0].logprobs is None


def test_streamed_logprobs_arrive_with_their_deltas(oai, line_images) -> None:
    stream = oai.chat.completions.create(model="a2", max_tokens=16, stream=True, logprobs=True, top_logprobs=2,
                                         messages=_image_message(line_images[4]))
    chunks = [c for c in stream if c.choices]
    tokens = [t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert content == FIXED_TEXTS["a2"]
    _check_greedy_logprobs(tokens, content, 2)


def test_ocr_returns_a_confidence_per_character(client, line_images) -> None:
    response = ocr(client, line_images[5], "a4", logprobs=1)
    assert response.status_code == 200, response.text
    page = response.json()["pages"][0]
    assert page["text"] == FIXED_TEXTS["a4"]
    assert len(page["logprobs"]) == page["usage"]["completion_tokens"]
    assert "".join(t["token"] for t in page["logprobs"]).startswith(page["text"])
    assert all(len(t["top_logprobs"]) == 1 and t["logprob"] <= 0 for t in page["logprobs"])
    without = ocr(client, line_images[5], "a4").json()["pages"][0]
    assert without["logprobs"] is None and without["text"] == page["text"]


LANG_SCHEMA = {"type": "object", "properties": {"lang": {"enum": ["zh", "en"]}}, "required": ["lang"],
               "additionalProperties": False}


def test_response_format_json_schema_constrains_the_answer(oai, line_images) -> None:
    import json

    answer = oai.chat.completions.create(
        model="a0", max_tokens=32, messages=_image_message(line_images[6]),
        response_format={"type": "json_schema", "json_schema": {"name": "lang", "schema": LANG_SCHEMA}},
    )
    # The adapter was taught to answer "甲乙丙丁": only the schema makes this JSON.
    assert json.loads(answer.choices[0].message.content) in ({"lang": "zh"}, {"lang": "en"})


def test_ocr_json_schema_from_a_form_field(client, line_images) -> None:
    import json

    response = ocr(client, line_images[7], json_schema=json.dumps(LANG_SCHEMA), max_tokens=32)
    assert response.status_code == 200, response.text
    assert json.loads(response.json()["text"]) in ({"lang": "zh"}, {"lang": "en"})


@pytest.mark.parametrize(
    ("response_format", "where"),
    [
        ({"type": "json_schema"}, "json_schema"),  # the schema is missing
        ({"type": "xml"}, "type"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "extra": 1}}, "extra"),
    ],
)
def test_bad_response_formats_are_refused_by_name(client, line_images, response_format, where) -> None:
    body = {"model": "a0", "max_tokens": 4, "messages": _image_message(line_images[0]), "response_format": response_format}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert where in (error.get("where") or "") + error["message"]


def test_a_schema_the_engine_cannot_compile_is_a_422_and_the_service_keeps_serving(client, line_images) -> None:
    response = ocr(client, line_images[0], json_schema='{"type": "object", "properties": {"a": {"type": "nosuchtype"}}}')
    assert response.status_code == 422, response.text
    assert "engine refused" in response.json()["error"]["message"]
    assert ocr(client, line_images[0], "a1").json()["text"] == FIXED_TEXTS["a1"]
    bad_json = ocr(client, line_images[0], json_schema="{not json")
    assert bad_json.status_code == 422 and "json_schema" in bad_json.text
