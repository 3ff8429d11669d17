"""Wires the service: settings -> checkpoint and family -> engine -> adapter catalog -> routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from ocrtune_inference.api import adapters, chat, health, ocr, openai_models
from ocrtune_inference.api.guards import RequestGuard
from ocrtune_inference.catalog import AdapterCatalog
from ocrtune_inference.checkpoint import LoraTargets, resolve_model_dir
from ocrtune_inference.engine import OCREngine
from ocrtune_inference.families import family_for
from ocrtune_inference.metrics import ServiceMetrics
from ocrtune_inference.ocr import OCRService
from ocrtune_inference.settings import InferenceSettings
from ocrtune_shared.http import install_error_handlers
from ocrtune_shared.web_console import attach_console

logger = logging.getLogger(__name__)


def create_app(settings: InferenceSettings | None = None) -> FastAPI:
    settings = settings or InferenceSettings()
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model_dir = resolve_model_dir(settings.model)
        family = family_for(model_dir)
        targets = LoraTargets.for_checkpoint(model_dir, family.vllm_model_class())
        engine = OCREngine.start(settings, str(model_dir), family.engine_kwargs())
        try:
            catalog = AdapterCatalog(
                settings.adapter_store,
                Path(settings.adapter_cache_dir).expanduser(),
                served_model=settings.model,
                served_dir=model_dir,
                family=family.name,
                targets=targets,
                max_lora_rank=settings.max_lora_rank,
                max_loras=settings.max_loras,
                engine=engine,
                metrics=metrics,
            )
            app.state.service = OCRService(engine, catalog, family, metrics, settings.model_name)
            logger.info("serving %s (family %s), adapters from %s", settings.model_name, family.name, settings.adapter_store)
            yield
        finally:
            app.state.service = None
            engine.shutdown()

    app = FastAPI(
        title="ocrtune inference",
        version="0.1.0",
        description="OCR on vLLM with per-request LoRA adapters (header X-Adapter), hot-loaded from the adapter store.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = None
    install_error_handlers(app)
    for router in (ocr, adapters, chat, openai_models, health):
        router.attach_router(app)
    attach_console(app, Path(__file__).with_name("ui"))  # the OCR playground at /ui/
    app.add_middleware(
        RequestGuard,
        api_keys=settings.api_keys,
        max_upload_bytes=settings.max_upload_bytes,
        max_adapter_bytes=settings.max_adapter_bytes,
    )
    return app
