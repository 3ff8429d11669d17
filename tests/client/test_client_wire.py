"""The client's wire-level pieces that need no server: SSE decoding, form fields, error bodies."""

from __future__ import annotations

import httpx
import pytest

from ocrtune_client.errors import error_from_response
from ocrtune_client.events import SSEDecoder, decode_job_event
from ocrtune_client.operations import adapter_headers, options_form
from ocrtune_client.uploads import read_image_source
from ocrtune_shared.errors import ErrorCode
from ocrtune_shared.jobs import JobEventType, JobState
from ocrtune_shared.ocr import OCROptions, OCRTask


def _feed(lines: list[str]):
    decoder = SSEDecoder()
    return [m for m in (decoder.feed(line) for line in lines) if m is not None]


def test_sse_decoder_follows_the_event_stream_rules() -> None:
    messages = _feed(
        [
            ": ping",
            "id: 3",
            "event: progress",
            'data: {"a":',
            "data: 1}",
            "",
            "",
            "data:no space",
            "",
        ]
    )
    assert [(m.event, m.data, m.id) for m in messages] == [
        ("progress", '{"a":\n1}', "3"),
        ("message", "no space", "3"),
    ]


def test_job_event_from_the_trainers_stream() -> None:
    (message,) = _feed(
        [
            "event: state",
            'data: {"seq": 2, "job_id": "ftjob-1", "type": "state", "time": "2026-01-01T00:00:00Z", '
            '"state": "succeeded", "message": "published x@1"}',
            "",
        ]
    )
    event = decode_job_event(message)
    assert event is not None and event.type == JobEventType.state and event.state == JobState.succeeded
    assert decode_job_event(_feed(["data: keep-alive", ""])[0]) is None


def test_options_become_form_fields() -> None:
    form = options_form(OCROptions(task=OCRTask.markdown, max_tokens=32, stream=True))
    assert form == {"task": "markdown", "resolution": "auto", "max_tokens": "32"}


def test_adapter_reference_is_checked_before_sending() -> None:
    assert adapter_headers("invoices@3") == {"X-Adapter": "invoices@3"}
    assert adapter_headers(None) == {}
    with pytest.raises(ValueError):
        adapter_headers("../etc")
    with pytest.raises(ValueError):
        adapter_headers("invoices@latest")


def test_media_type_from_the_bytes_not_the_name(tmp_path) -> None:
    pdf = tmp_path / "scan.bin"
    pdf.write_bytes(b"%PDF-1.7\n...")
    assert read_image_source(pdf)[2] == "application/pdf"
    assert read_image_source(b"\x89PNG\r\n\x1a\n....")[2] == "image/png"


def _response(status: int, **kwargs) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", "http://svc/x"), **kwargs)


def test_error_body_of_the_service_is_kept() -> None:
    body = {"error": {"code": "adapter_not_found", "message": "no adapter 'x' in the store", "where": "X-Adapter"}}
    error = error_from_response(_response(404, json=body))
    assert error.status == 404 and error.code == ErrorCode.adapter_not_found
    assert error.body.where == "X-Adapter" and "no adapter 'x'" in str(error)


def test_errors_outside_the_schema_keep_their_words() -> None:
    proxy = error_from_response(_response(502, text="<html>Bad Gateway from the proxy</html>"))
    assert proxy.code == ErrorCode.internal and "Bad Gateway from the proxy" in proxy.message
    framework = error_from_response(_response(401, json={"detail": "Not authenticated"}))
    assert framework.code == ErrorCode.unauthorized and framework.message == "Not authenticated"
