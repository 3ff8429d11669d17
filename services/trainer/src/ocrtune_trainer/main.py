"""Wires the trainer API: settings, job store, worker supervisor, routes, error rendering."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response

from ocrtune_shared.web_console import attach_console
from ocrtune_trainer.api import console, datasets, errors, finetune, health
from ocrtune_trainer.job_store import JobStore
from ocrtune_trainer.metrics import TrainerMetrics
from ocrtune_trainer.settings import TrainerSettings
from ocrtune_trainer.supervisor import WorkerSupervisor


def create_app(settings: TrainerSettings | None = None) -> FastAPI:
    settings = settings or TrainerSettings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.local_adapter_store.mkdir(parents=True, exist_ok=True)
    jobs = JobStore(settings.resolved_database_url)
    metrics = TrainerMetrics(jobs.count_by_state)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        supervisor = None
        if settings.run_worker:
            supervisor = WorkerSupervisor(settings, jobs, on_restart=metrics.worker_restarts.inc)
            supervisor.start()
        app.state.supervisor = supervisor
        try:
            yield
        finally:
            if supervisor is not None:
                supervisor.stop()
            jobs.close()

    app = FastAPI(
        title="ocrtune trainer",
        version="0.1.0",
        description="LoRA fine-tuning jobs for OCR vision-language models, published to the adapter store",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.jobs = jobs
    app.state.metrics = metrics
    app.state.supervisor = None

    @app.middleware("http")
    async def _count_requests(request: Request, call_next) -> Response:  # type: ignore[no-untyped-def]
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.requests.labels(request.method, getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    errors.attach_error_handlers(app)
    finetune.attach_router(app)
    health.attach_router(app)
    datasets.attach_router(app)
    console.attach_router(app)
    attach_console(app, Path(__file__).with_name("ui"))  # the fine-tune dashboard at /ui/
    return app


def run() -> None:
    from ocrtune_shared.http import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s api %(levelname)s %(message)s")
    settings = TrainerSettings()
    serve(create_app(settings), host=settings.host, port=settings.port)
