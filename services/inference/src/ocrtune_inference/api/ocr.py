from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI, Header, Request
from sse_starlette import EventSourceResponse

from ocrtune_inference.api.dependencies import Service
from ocrtune_inference.api.errors import ERROR_RESPONSES
from ocrtune_inference.documents import is_pdf, load_pages
from ocrtune_inference.inputs import from_json, from_multipart
from ocrtune_shared.errors import ErrorCode, ErrorResponse, ServiceError
from ocrtune_shared.headers import ADAPTER_HEADER
from ocrtune_shared.ocr import OCRJSONRequest, OCRResponse

router = APIRouter(tags=["ocr"])
INLINE_DECODE_BYTES = 256 * 1024

_OPTION_FIELDS = {
    "task": {"type": "string", "enum": ["free_ocr", "markdown"], "default": "free_ocr"},
    "prompt": {"type": "string", "description": "Overrides the task's prompt"},
    "resolution": {"type": "string", "enum": ["auto", "tiny", "small", "base", "large", "gundam"], "default": "auto"},
    "max_tokens": {"type": "integer", "default": 512, "minimum": 1, "maximum": 8192},
    "stream": {"type": "boolean", "default": False, "description": "Server-sent OCRStreamEvent objects"},
}
OCR_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}, **_OPTION_FIELDS},
                }
            },
            "application/json": {
                "schema": {
                    k: v
                    for k, v in OCRJSONRequest.model_json_schema(ref_template="#/components/schemas/{model}").items()
                    if k != "$defs"
                },
                "example": {"image_base64": "iVBORw0KGgo...", "task": "free_ocr", "max_tokens": 256},
            },
        },
    }
}


@router.post(
    "/ocr",
    response_model=OCRResponse,
    summary="OCR an image or every page of a PDF, with an optional LoRA adapter",
    responses={**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}}}},
    openapi_extra=OCR_REQUEST_BODY,
)
async def ocr(
    request: Request,
    service: Service,
    x_adapter: str | None = Header(
        default=None, alias=ADAPTER_HEADER, description="name or name@version of a LoRA adapter; absent: base model"
    ),
):
    settings = request.app.state.settings
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        data, options = await from_multipart(request, settings)
    elif content_type == "application/json":
        data, options = await from_json(request, settings)
    else:
        raise ServiceError(
            415, ErrorCode.unsupported_media_type, "send multipart/form-data (field 'file') or application/json"
        )
    adapter = await service.adapter_for(x_adapter)
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
    if not options.stream:
        return await service.recognize(pages, options, adapter)

    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            async for event in service.stream(pages, options, adapter):
                yield {"data": event.model_dump_json()}
        except ServiceError as exc:
            yield {"event": "error", "data": exc.response().model_dump_json()}

    return EventSourceResponse(events())


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
    build_openapi = app.openapi

    def openapi() -> dict:
        # The JSON body is declared by hand (the route reads two content types), so the
        # models it refers to (OCRTask, ResolutionMode) are added to the components here.
        schema = build_openapi()
        json_schema = OCRJSONRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in json_schema.get("$defs", {}).items():
            components.setdefault(name, definition)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["attach_router", "ErrorResponse"]
