from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI, Header, Request
from sse_starlette import EventSourceResponse

from ocrtune_inference.api.dependencies import Service
from ocrtune_inference.api.errors import ERROR_RESPONSES
from ocrtune_inference.inputs import read_ocr_request
from ocrtune_shared.errors import ErrorResponse, ServiceError
from ocrtune_shared.headers import ADAPTER_HEADER
from ocrtune_shared.ocr import OCRJSONRequest, OCRResponse

router = APIRouter(tags=["ocr"])

_OPTION_FIELDS = {
    "task": {"type": "string", "enum": ["free_ocr", "markdown"], "default": "free_ocr"},
    "prompt": {"type": "string", "description": "Overrides the task's prompt"},
    "resolution": {"type": "string", "enum": ["auto", "tiny", "small", "base", "large", "gundam"], "default": "auto"},
    "max_tokens": {"type": "integer", "default": 512, "minimum": 1, "maximum": 8192},
    "stream": {"type": "boolean", "default": False, "description": "Server-sent OCRStreamEvent objects"},
    "logprobs": {"type": "integer", "minimum": 0, "maximum": 20,
                 "description": "Each generated token's log-probability and this many alternatives"},
    "json_schema": {"type": "string", "description": "A JSON Schema (as text) the answer must be valid JSON for"},
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
    pages, options = await read_ocr_request(request, request.app.state.settings)
    adapter = await service.adapter_for(x_adapter)
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
