from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ocrtune_shared.errors import ErrorCode
from ocrtune_shared.http import error_response

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The engine is ready to serve")
async def readyz(request: Request) -> JSONResponse:
    service = getattr(request.app.state, "service", None)
    if service is None or not service.engine.ready:
        return error_response(503, ErrorCode.not_ready, "the engine is not ready")
    return JSONResponse({"status": "ready", "model": service.model_name})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
