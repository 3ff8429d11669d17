"""Bad inputs: each a 4xx ErrorResponse that names the problem; the service keeps serving."""

from __future__ import annotations

import base64
import io
import os

import pytest
from inference_http import FIXED_TEXTS, MAX_UPLOAD_BYTES, ocr
from PIL import Image


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _empty_pdf() -> bytes:
    import pypdfium2 as pdfium

    buffer = io.BytesIO()
    pdfium.PdfDocument.new().save(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bad_files(line_images) -> dict[str, bytes]:
    good = line_images[0]
    return {
        "zero-size": b"",
        "non-image": "这不是图片, just text.\n".encode() * 10,
        "corrupt": good[:100] + os.urandom(2000),
        "truncated": good[: len(good) // 2],
        # 400 M pixels of 1-bit zeros: a ~50 KB file that would need gigabytes decoded.
        "bomb": _png((20_000, 20_000), mode="1"),
        "pdf-no-pages": _empty_pdf(),
        "pdf-corrupt": b"%PDF-1.7\n" + os.urandom(3000),
    }


@pytest.mark.parametrize(
    ("case", "status", "says"),
    [
        ("zero-size", 422, "empty"),
        ("non-image", 422, "not a recognised image"),
        ("corrupt", 422, "corrupt"),
        ("truncated", 422, "truncated"),
        ("bomb", 422, "pixels"),
        ("pdf-no-pages", 422, "no pages"),
        ("pdf-corrupt", 422, "PDF"),
    ],
)
def test_bad_upload_refused(client, bad_files, line_images, case, status, says) -> None:
    response = ocr(client, bad_files[case], "a0")
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_image" and says in error["message"], error
    assert error["where"] == "file"
    assert ocr(client, line_images[0], "a0").json()["text"] == FIXED_TEXTS["a0"]


def test_oversized_upload(client, line_images) -> None:
    response = ocr(client, os.urandom(MAX_UPLOAD_BYTES * 2))
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    big = base64.b64encode(os.urandom(MAX_UPLOAD_BYTES + 1024)).decode()
    response = client.post("/ocr", json={"image_base64": big})
    assert response.status_code == 413 and "limit" in response.json()["error"]["message"]
    assert ocr(client, line_images[0], "a0").json()["text"] == FIXED_TEXTS["a0"]


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "says"),
    [
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type", "multipart"),
        ({"data": {"max_tokens": "5"}, "files": {"other": ("x", b"x")}}, 422, "invalid_request", "'file'"),
        ({"json": {"max_tokens": 5}}, 422, "invalid_request", "exactly one"),
        ({"json": {"image_base64": "!!!not base64!!!"}}, 422, "invalid_image", "base64"),
        ({"json": {"image_url": "http://example.com/a.png"}}, 422, "uri_not_allowed", "https"),
        ({"json": {"image_url": "https://169.254.169.254/latest/meta-data"}}, 422, "uri_not_allowed", "public"),
        ({"json": {"image_url": "https://127.0.0.1/a.png"}}, 422, "uri_not_allowed", "public"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "invalid_request", "JSON"),
    ],
)
def test_bad_request_refused(client, kwargs, status, code, says) -> None:
    response = client.post("/ocr", **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and says in error["message"], error


def test_bad_option_names_the_field(client, line_images) -> None:
    response = ocr(client, line_images[0], max_tokens=0)
    assert response.status_code == 422
    assert response.json()["error"]["where"] == "max_tokens"
    response = ocr(client, line_images[0], task="poetry")
    assert response.status_code == 422 and response.json()["error"]["where"] == "task"


def test_unknown_route_is_json(client) -> None:
    response = client.get("/nope")
    assert response.status_code == 404 and response.json()["error"]["code"] == "invalid_request"
