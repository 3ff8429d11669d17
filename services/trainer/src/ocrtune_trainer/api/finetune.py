"""Routes of the fine-tune jobs API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from sse_starlette.sse import EventSourceResponse

from ocrtune_shared.errors import ErrorCode, ServiceError, error_responses
from ocrtune_shared.finetune import FinetuneRequest
from ocrtune_shared.http import bearer_key_matches
from ocrtune_shared.jobs import CheckpointList, Job, JobEventList, JobEventType, JobList, JobState
from ocrtune_trainer.job_store import JobStore
from ocrtune_trainer.settings import TrainerSettings
from ocrtune_trainer.validation import check_request

ERRORS = error_responses(dict.fromkeys((400, 401, 404, 409, 422)))


def require_api_key(request: Request, authorization: str | None = Header(default=None)) -> None:
    keys: list[str] = request.app.state.settings.api_keys
    if not keys:
        return
    if not bearer_key_matches(authorization, keys):
        raise ServiceError(401, ErrorCode.unauthorized, "missing or wrong API key: send 'Authorization: Bearer <key>'")


router = APIRouter(prefix="/finetune", tags=["finetune"], dependencies=[Depends(require_api_key)], responses=ERRORS)


def _jobs(request: Request) -> JobStore:
    return request.app.state.jobs


@router.post("", status_code=202, response_model=Job)
async def submit(body: FinetuneRequest, request: Request) -> Job:
    settings: TrainerSettings = request.app.state.settings
    check_request(body, settings)
    if body.base_model is None:
        body = body.model_copy(update={"base_model": settings.base_model})
    job = await run_in_threadpool(_jobs(request).submit, body)
    request.app.state.metrics.jobs_submitted.inc()
    return job


@router.get("", response_model=JobList)
async def list_jobs(
    request: Request,
    state: JobState | None = None,
    cursor: str | None = Query(default=None, pattern=r"^[0-9]*$", description="next_cursor of the previous page"),
    limit: int = Query(default=20, ge=1, le=100),
) -> JobList:
    try:
        return await run_in_threadpool(_jobs(request).list, state, cursor or None, limit)
    except ValueError as exc:
        raise ServiceError(422, ErrorCode.invalid_request, str(exc), "cursor") from None


@router.get("/{job_id}", response_model=Job)
async def get_job(job_id: str, request: Request) -> Job:
    return await run_in_threadpool(_jobs(request).get, job_id)


@router.post("/{job_id}/cancel", response_model=Job)
async def cancel_job(job_id: str, request: Request) -> Job:
    return await run_in_threadpool(_jobs(request).request_cancel, job_id)


@router.get("/{job_id}/checkpoints", response_model=CheckpointList)
async def job_checkpoints(job_id: str, request: Request) -> CheckpointList:
    """The checkpoints the job wrote while training, oldest first (``kept``: still on disk)."""
    job = await run_in_threadpool(_jobs(request).get, job_id)
    return CheckpointList(job_id=job.id, checkpoints=job.result.checkpoints, resumes=job.resumes)


@router.get("/{job_id}/events/list", response_model=JobEventList)
async def job_event_list(
    job_id: str,
    request: Request,
    after: int = Query(default=0, ge=0, description="Events after this seq (next_after of the previous page)"),
    limit: int = Query(default=100, ge=1, le=1000),
    type_: Annotated[JobEventType | None, Query(alias="type", description="Only events of this type")] = None,
) -> JobEventList:
    """The job's events as JSON pages, oldest first: the same events the SSE stream sends."""
    return await run_in_threadpool(_jobs(request).event_page, job_id, after, limit, type_)


@router.get("/{job_id}/events", response_class=EventSourceResponse)
async def job_events(
    job_id: str, request: Request, last_event_id: str | None = Header(default=None)
) -> EventSourceResponse:
    """Server-sent events: every state change, progress step, eval CER; ends when the job ends."""
    jobs = _jobs(request)
    await run_in_threadpool(jobs.get, job_id)  # 404 before the stream starts
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
    interval = request.app.state.settings.poll_interval_s

    async def stream() -> AsyncIterator[dict]:
        nonlocal after
        while True:
            events = await run_in_threadpool(jobs.events, job_id, after)
            for event in events:
                after = event.seq
                yield {"id": str(event.seq), "event": event.type.value, "data": event.model_dump_json()}
            if not events:
                job = await run_in_threadpool(jobs.get, job_id)
                if job.state.terminal and not await run_in_threadpool(jobs.events, job_id, after):
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(interval)

    return EventSourceResponse(stream(), ping=15)


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
