"""OCR through every door: multipart, JSON, streaming, PDF, OpenAI chat; health, metrics, OpenAPI."""

from __future__ import annotations

import base64
import io
import json

from inference_http import FIXED_TEXTS, ocr
from PIL import Image


def test_base_and_each_adapter_answer_their_own(client, line_images, base_answers) -> None:
    for index in (0, 5):
        response = ocr(client, line_images[index])
        assert response.json()["text"] == base_answers[index]
        assert response.json()["adapter"] is None
        for name, text in FIXED_TEXTS.items():
            body = ocr(client, line_images[index], name).json()
            assert body["text"] == text, name
            assert body["adapter"] == f"{name}@1"
            assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0
            assert body["pages"][0]["finish_reason"] == "stop"
    assert len(set(FIXED_TEXTS.values()) | {base_answers[0]}) == len(FIXED_TEXTS) + 1


def test_json_body_with_base64_and_data_url(client, line_images) -> None:
    encoded = base64.b64encode(line_images[1]).decode()
    for image in (encoded, f"data:image/png;base64,{encoded}"):
        response = client.post("/ocr", json={"image_base64": image, "max_tokens": 16}, headers={"X-Adapter": "a3"})
        assert response.status_code == 200, response.text
        assert response.json()["text"] == FIXED_TEXTS["a3"]


def test_version_pinned_reference(client, line_images) -> None:
    assert ocr(client, line_images[2], "a1@1").json()["text"] == FIXED_TEXTS["a1"]


def test_stream_sends_deltas_then_the_response(client, line_images) -> None:
    with client.stream(
        "POST", "/ocr", files={"file": ("p.png", line_images[3], "image/png")},
        data={"stream": "true", "max_tokens": "16"}, headers={"X-Adapter": "a4"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
    assert events[-1]["done"] is True
    assert "".join(e["delta"] for e in events[:-1]) == FIXED_TEXTS["a4"]
    assert events[-1]["response"]["text"] == FIXED_TEXTS["a4"]


def test_pdf_pages_each_ocrd(client, line_images) -> None:
    pages = [Image.open(io.BytesIO(png)).convert("RGB") for png in line_images[:3]]
    buffer = io.BytesIO()
    # 72 dpi: the service renders at scale 2, back to about the line images' size.
    pages[0].save(buffer, format="PDF", save_all=True, append_images=pages[1:], resolution=144)
    response = client.post(
        "/ocr", files={"file": ("doc.pdf", buffer.getvalue(), "application/pdf")}, data={"max_tokens": "16"},
        headers={"X-Adapter": "a2"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [p["page"] for p in body["pages"]] == [1, 2, 3]
    assert [p["text"] for p in body["pages"]] == [FIXED_TEXTS["a2"]] * 3
    assert body["text"] == "\f".join([FIXED_TEXTS["a2"]] * 3)


def test_openai_chat_completions(client, server, line_images, base_answers) -> None:
    url = "data:image/png;base64," + base64.b64encode(line_images[0]).decode()
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                             {"type": "text", "text": "Free OCR."}]}]
    response = client.post("/v1/chat/completions", json={"model": "a1", "messages": messages, "max_tokens": 16})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == FIXED_TEXTS["a1"]
    assert body["model"] == "a1@1"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    base = client.post(
        "/v1/chat/completions", json={"model": str(server.model_dir), "messages": messages, "max_tokens": 16}
    )
    assert base.json()["choices"][0]["message"]["content"] == base_answers[0]
    unknown = client.post("/v1/chat/completions", json={"model": "nobody", "messages": messages})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "adapter_not_found"


def test_health_ready_metrics_openapi(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    metrics = client.get("/metrics").text
    assert 'ocrtune_ocr_requests_total{adapter="a1@1",status="ok"}' in metrics
    assert "ocrtune_ocr_latency_seconds_bucket" in metrics
    assert 'ocrtune_tokens_total{adapter="__base__",kind="completion"}' in metrics
    assert "ocrtune_requests_in_flight" in metrics
    # vLLM's own series beside ours, from the engine that served the requests above.
    assert "vllm:num_requests_running" in metrics and "vllm:prompt_tokens_total" in metrics
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/ocr"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert "/v1/chat/completions" in spec["paths"] and "/adapters/{name}/load" in spec["paths"]


def test_openai_chat_stream(client, line_images) -> None:
    url = "data:image/png;base64," + base64.b64encode(line_images[2]).decode()
    body = {"model": "a0", "stream": True, "max_tokens": 16,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        data = [line[5:].strip() for line in response.iter_lines() if line.startswith("data:")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == FIXED_TEXTS["a0"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
