"""Routes the web console (/ui/) needs beside the jobs API: its settings, and the adapters it can link to."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request

from ocrtune_shared.adapters import AdapterList
from ocrtune_shared.console import ConsoleConfig
from ocrtune_shared.errors import error_responses
from ocrtune_trainer.api.finetune import require_api_key
from ocrtune_trainer.console import console_config, served_adapters

router = APIRouter(
    tags=["console"],
    dependencies=[Depends(require_api_key)],
    responses=error_responses({
        401: None,
        404: "No inference service configured (OCRTUNE_TRAINER_INFERENCE_URL)",
        502: "The inference service answered with an error",
        503: "The inference service cannot be reached",
    }),
)


@router.get("/console", response_model=ConsoleConfig, summary="Settings the web console shows: recipe defaults, links")
async def get_console_config(request: Request) -> ConsoleConfig:
    return console_config(request.app.state.settings)


@router.get(
    "/adapters",
    response_model=AdapterList,
    summary="The inference service's adapters (its GET /adapters, read with the trainer's inference key)",
)
async def list_served_adapters(request: Request) -> AdapterList:
    return await served_adapters(request.app.state.settings)


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
