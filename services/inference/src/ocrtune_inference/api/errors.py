"""Every error leaves as the shared ``ErrorResponse`` JSON; rendered here and nowhere else."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ocrtune_shared.errors import ErrorBody, ErrorCode, ErrorResponse, ServiceError

logger = logging.getLogger(__name__)

ERROR_RESPONSES = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        401: "Missing or wrong API key",
        404: "Unknown adapter",
        409: "Adapter trained for another model",
        413: "Upload too large",
        415: "Unsupported content type",
        422: "Invalid request, image or adapter",
        503: "Engine not ready",
    }.items()
}

_HTTP_CODES = {
    401: ErrorCode.unauthorized,
    404: ErrorCode.invalid_request,
    405: ErrorCode.invalid_request,
    413: ErrorCode.payload_too_large,
    415: ErrorCode.unsupported_media_type,
    503: ErrorCode.not_ready,
}


def error_json(status: int, code: ErrorCode, message: str, where: str | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, where=where))
    return JSONResponse(status_code=status, content=body.model_dump(mode="json"))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=exc.response().model_dump(mode="json"))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or None
        messages = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}" for e in exc.errors()
        )
        return error_json(422, ErrorCode.invalid_request, messages or "invalid request", where)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.invalid_request)
        return error_json(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return error_json(500, ErrorCode.internal, f"internal error: {type(exc).__name__}")
