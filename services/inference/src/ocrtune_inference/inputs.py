"""Reading what a client sent: a multipart upload, base64 in JSON, or a URL; within the size limit."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from ocrtune_inference.settings import InferenceSettings
from ocrtune_shared.errors import ErrorCode, ServiceError
from ocrtune_shared.fetch import FetchError, FetchFailure, FetchPolicy, afetch_into
from ocrtune_shared.ocr import OCRJSONRequest, OCROptions


def validation_message(exc: ValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    where = ".".join(str(p) for p in errors[0]["loc"]) if errors and errors[0].get("loc") else None
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors), where


def _too_large(size: int, limit: int, where: str) -> ServiceError:
    return ServiceError(413, ErrorCode.payload_too_large, f"upload of {size}+ bytes exceeds the limit of {limit} bytes", where)


async def from_multipart(request: Request, settings: InferenceSettings) -> tuple[bytes, OCROptions]:
    form = await request.form(max_files=1, max_fields=16)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ServiceError(422, ErrorCode.invalid_request, "multipart field 'file' (the image or PDF) is required", "file")
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise _too_large(len(data), settings.max_upload_bytes, "file")
    fields = {key: value for key, value in form.items() if key != "file" and isinstance(value, str)}
    try:
        return data, OCROptions.model_validate(fields)
    except ValidationError as exc:
        message, where = validation_message(exc)
        raise ServiceError(422, ErrorCode.invalid_request, message, where) from None


def decode_base64(text: str, limit: int, where: str) -> bytes:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    if len(text) > limit * 4 // 3 + 8:
        raise _too_large(len(text) * 3 // 4, limit, where)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ServiceError(422, ErrorCode.invalid_image, "not valid base64", where) from None
    if len(data) > limit:
        raise _too_large(len(data), limit, where)
    return data


def fetch_policy(settings: InferenceSettings) -> FetchPolicy:
    """What image_url may reach: https on public addresses; private ones only when the operator allows them."""
    return FetchPolicy(
        schemes=frozenset({"https"}),
        allow_private=settings.allow_private_urls,
        allow_private_setting="OCRTUNE_INFERENCE_ALLOW_PRIVATE_URLS",
        timeout_s=settings.url_fetch_timeout_s,
        connect_timeout_s=settings.url_fetch_timeout_s,
    )


async def fetch_image_url(url: str, settings: InferenceSettings) -> bytes:
    """The bytes at ``url``, at most ``max_upload_bytes``; a 4xx ``ServiceError`` naming image_url otherwise."""
    body = io.BytesIO()
    try:
        await afetch_into(url, body, policy=fetch_policy(settings), max_bytes=settings.max_upload_bytes,
                          where="image_url")
    except FetchError as exc:
        status, code = {
            FetchFailure.refused: (422, ErrorCode.uri_not_allowed),
            FetchFailure.too_large: (413, ErrorCode.payload_too_large),
        }.get(exc.failure, (422, ErrorCode.invalid_request))
        message = exc.message if exc.failure is FetchFailure.too_large else f"cannot fetch image_url: {exc.message}"
        raise ServiceError(status, code, message, "image_url") from None
    return body.getvalue()


async def load_source(base64_text: str | None, url: str | None, settings: InferenceSettings) -> bytes:
    if base64_text is not None:
        return decode_base64(base64_text, settings.max_upload_bytes, "image_base64")
    assert url is not None
    if url.startswith("data:"):
        return decode_base64(url, settings.max_upload_bytes, "image_url")
    return await fetch_image_url(url, settings)


async def from_json(request: Request, settings: InferenceSettings) -> tuple[bytes, OCROptions]:
    body = await request.body()
    try:
        parsed = OCRJSONRequest.model_validate_json(body)
    except ValidationError as exc:
        message, where = validation_message(exc)
        raise ServiceError(422, ErrorCode.invalid_request, message, where) from None
    data = await load_source(parsed.image_base64, parsed.image_url, settings)
    return data, OCROptions.model_validate(parsed.model_dump(include=set(OCROptions.model_fields)))


INLINE_DECODE_BYTES = 256 * 1024


async def read_ocr_request(request: Request, settings: InferenceSettings) -> tuple[list[Any], OCROptions]:
    """``POST /ocr``'s pages (decoded, within the pixel and page limits) and options, from either body type."""
    import asyncio
    import functools

    from ocrtune_inference.documents import is_pdf, load_pages

    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        data, options = await from_multipart(request, settings)
    elif content_type == "application/json":
        data, options = await from_json(request, settings)
    else:
        raise ServiceError(
            415, ErrorCode.unsupported_media_type, "send multipart/form-data (field 'file') or application/json"
        )
    decode = functools.partial(
        load_pages,
        data,
        max_pixels=settings.max_image_pixels,
        max_pages=settings.max_pdf_pages,
        pdf_scale=settings.pdf_render_scale,
        where="file" if content_type == "multipart/form-data" else "image",
    )
    # A line or a small page decodes faster than a thread hop; big ones must not block the loop.
    pages = decode() if len(data) < INLINE_DECODE_BYTES and not is_pdf(data) else await asyncio.to_thread(decode)
    return pages, options
