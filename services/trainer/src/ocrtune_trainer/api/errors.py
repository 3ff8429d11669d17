"""Trainer-specific errors on top of the shared rendering (``ocrtune_shared.http``)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ocrtune_shared.errors import ErrorCode
from ocrtune_shared.http import error_response, install_error_handlers
from ocrtune_trainer.job_store import JobConflict, JobNotFound


def attach_error_handlers(app: FastAPI) -> None:
    install_error_handlers(app)

    @app.exception_handler(JobNotFound)
    async def _not_found(_request: Request, exc: JobNotFound) -> JSONResponse:
        return error_response(404, ErrorCode.job_not_found, str(exc), "job_id")

    @app.exception_handler(JobConflict)
    async def _conflict(_request: Request, exc: JobConflict) -> JSONResponse:
        return error_response(409, ErrorCode.job_conflict, str(exc), "job_id")
