"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready: the job store or the worker is down"}})
async def readyz(request: Request) -> JSONResponse:
    """Ready when the job store answers and (if this process runs one) the worker is alive."""
    state = request.app.state
    problems: list[str] = []
    try:
        await run_in_threadpool(state.jobs.count_by_state)
    except Exception as exc:
        problems.append(f"job store unreachable: {type(exc).__name__}")
    supervisor = state.supervisor
    worker = None
    if supervisor is not None:
        worker = {"pid": supervisor.pid, "alive": supervisor.alive, "restarts": supervisor.restarts}
        if not supervisor.alive:
            problems.append("worker process is not running (restarting)")
    body = {"status": "ready" if not problems else "not_ready", "problems": problems, "worker": worker}
    return JSONResponse(status_code=200 if not problems else 503, content=body)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    state = request.app.state
    if state.supervisor is not None:
        state.metrics.worker_up.set(1 if state.supervisor.alive else 0)
    payload = await run_in_threadpool(generate_latest, state.metrics.registry)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
