from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile

from ocrtune_inference.adapter_upload import upload_adapter as import_upload
from ocrtune_inference.api.dependencies import Service
from ocrtune_inference.api.errors import ERROR_RESPONSES
from ocrtune_shared.adapters import AdapterInfo, AdapterList, AdapterLoadResponse, AdapterUnloadResponse
from ocrtune_shared.names import AdapterName

router = APIRouter(tags=["adapters"], responses=ERROR_RESPONSES)


@router.get("/adapters", response_model=AdapterList, summary="Adapters in the store, with where each is loaded")
async def list_adapters(service: Service) -> AdapterList:
    return await service.catalog.list()


@router.post(
    "/adapters",
    status_code=201,
    response_model=AdapterInfo,
    summary="Upload a PEFT adapter (zip or tar of adapter_config.json + adapter_model.safetensors) as a new version",
    description="Converted where the model family needs it, checked as a first request would check it, then "
    "published: the answer is the new version, which `name` now resolves to. A refused adapter is never published.",
)
async def upload_adapter(
    request: Request,
    service: Service,
    file: Annotated[UploadFile, File(description="zip or tar(.gz) of a PEFT adapter folder")],
    name: Annotated[AdapterName, Form(description="adapter name to publish under")],
    base_model: Annotated[
        str | None, Form(description="model the adapter was trained on; default: the served model")
    ] = None,
    model_family: Annotated[
        str | None, Form(description="e.g. qwen2_vl, deepseek_ocr; default: the served family")
    ] = None,
) -> AdapterInfo:
    return await asyncio.to_thread(
        import_upload,
        service.catalog,
        file.file,
        name=name,
        base_model=base_model,
        model_family=model_family,
        max_bytes=request.app.state.settings.max_adapter_bytes,
    )


@router.post(
    "/adapters/{name}/load",
    response_model=AdapterLoadResponse,
    summary="Validate and load an adapter now (pre-warm); name or name@version",
)
async def load_adapter(name: str, service: Service) -> AdapterLoadResponse:
    adapter = await service.catalog.load(name)
    return AdapterLoadResponse(adapter=adapter.ref)


@router.delete(
    "/adapters/{name}",
    response_model=AdapterUnloadResponse,
    summary="Unload an adapter from the engine; the store keeps it",
)
async def unload_adapter(name: str, service: Service) -> AdapterUnloadResponse:
    return AdapterUnloadResponse(unloaded=await service.catalog.unload(name))


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
