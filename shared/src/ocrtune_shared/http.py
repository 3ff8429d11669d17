"""How both services turn errors into HTTP responses: always the shared ``ErrorResponse`` JSON.

Needs FastAPI (``ocrtune-shared[server]``); the client never imports this module.
"""

from __future__ import annotations

import logging
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ocrtune_shared.errors import ErrorBody, ErrorCode, ErrorResponse, ServiceError

logger = logging.getLogger(__name__)

_CODES_BY_STATUS = {
    401: ErrorCode.unauthorized,
    413: ErrorCode.payload_too_large,
    415: ErrorCode.unsupported_media_type,
    503: ErrorCode.not_ready,
}


def error_response(
    status: int, code: ErrorCode, message: str, where: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, where=where))
    return JSONResponse(status_code=status, content=body.model_dump(mode="json"), headers=headers)


def bearer_key_matches(authorization: str | None, api_keys: list[str]) -> bool:
    """Whether ``Authorization: Bearer <key>`` names one of ``api_keys`` (compared in constant time)."""
    given = (authorization or "").encode()
    token = given[7:] if given[:7].lower() == b"bearer " else b""
    return any(secrets.compare_digest(token, key.encode()) for key in api_keys)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match is not Match.NONE and getattr(route, "methods", None):
            methods.update(route.methods)
    return sorted(methods - {"HEAD"})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=exc.response().model_dump(mode="json"))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        message = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg', 'invalid')}"
            for e in errors[:5]
        )
        return error_response(422, ErrorCode.invalid_request, message or "invalid request", where)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        default = ErrorCode.invalid_request if exc.status_code < 500 else ErrorCode.internal
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette's Allow names only the first route matching the path (GET and POST /x are two routes).
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return error_response(
            exc.status_code, _CODES_BY_STATUS.get(exc.status_code, default), str(exc.detail), headers=headers or None
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return error_response(500, ErrorCode.internal, f"internal error: {type(exc).__name__}")


KEEP_ALIVE_S = 75.0
"""How long an idle client connection stays open. uvicorn's 5 s default is shorter than what
clients and load balancers keep a connection for (aiohttp 15 s, AWS ALB 60 s), so the server
closed connections a client was reusing: on the H200 a 1.4 MB page upload died with 'Can not
write request body' after a quiet spell. Longer than the balancer's, the client closes first."""


def serve(app: FastAPI, *, host: str, port: int, keep_alive_s: float = KEEP_ALIVE_S, **uvicorn_options: object) -> None:
    """Run ``app`` under uvicorn on a socket bound BEFORE the app starts up.

    uvicorn binds its port only after the lifespan start-up, and the inference service
    starts vLLM there, which opens ports of its own on free ephemeral numbers: one of
    them can be ours (seen in the test suite as 'address already in use' when the service
    was given a free port). Bound first, the port is ours from the start; connections are
    refused until uvicorn listens, as before.
    """
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, host=host, port=port, timeout_keep_alive=keep_alive_s,  # type: ignore[arg-type]
                            **uvicorn_options)
    uvicorn.Server(config).run(sockets=[sock])
