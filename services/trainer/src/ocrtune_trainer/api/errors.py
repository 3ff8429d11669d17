"""The one place errors become HTTP responses: always the shared ``ErrorResponse`` JSON."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ocrtune_shared.errors import ErrorBody, ErrorCode, ErrorResponse, ServiceError
from ocrtune_trainer.jobs import JobConflict, JobNotFound

log = logging.getLogger(__name__)

_STATUS_CODES = {
    401: ErrorCode.unauthorized,
    404: ErrorCode.invalid_request,
    405: ErrorCode.invalid_request,
    413: ErrorCode.payload_too_large,
    415: ErrorCode.unsupported_media_type,
}


def _render(
    status: int, code: ErrorCode, message: str, where: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, where=where))
    return JSONResponse(status_code=status, content=body.model_dump(mode="json"), headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match is not Match.NONE and getattr(route, "methods", None):
            methods.update(route.methods)
    return sorted(methods - {"HEAD"})


def attach_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=exc.response().model_dump(mode="json"))

    @app.exception_handler(JobNotFound)
    async def _not_found(_request: Request, exc: JobNotFound) -> JSONResponse:
        return _render(404, ErrorCode.job_not_found, str(exc), "job_id")

    @app.exception_handler(JobConflict)
    async def _conflict(_request: Request, exc: JobConflict) -> JSONResponse:
        return _render(409, ErrorCode.job_conflict, str(exc), "job_id")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        message = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg', 'invalid')}"
            for e in errors[:5]
        )
        return _render(422, ErrorCode.invalid_request, message or "invalid request", where)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(
            exc.status_code, ErrorCode.invalid_request if exc.status_code < 500 else ErrorCode.internal
        )
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette's Allow names only the first route matching the path; GET and POST /finetune are two.
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return _render(exc.status_code, code, str(exc.detail), headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _render(500, ErrorCode.internal, f"internal error: {type(exc).__name__}")
