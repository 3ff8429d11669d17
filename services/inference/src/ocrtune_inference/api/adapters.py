from __future__ import annotations

from fastapi import APIRouter, FastAPI

from ocrtune_inference.api.dependencies import Service
from ocrtune_inference.api.errors import ERROR_RESPONSES
from ocrtune_shared.adapters import AdapterList

router = APIRouter(tags=["adapters"], responses=ERROR_RESPONSES)


@router.get("/adapters", response_model=AdapterList, summary="Adapters in the store, with where each is loaded")
async def list_adapters(service: Service) -> AdapterList:
    return await service.catalog.list()


@router.post("/adapters/{name}/load", summary="Validate and load an adapter now (pre-warm); name or name@version")
async def load_adapter(name: str, service: Service) -> dict[str, str]:
    adapter = await service.catalog.load(name)
    return {"adapter": adapter.ref, "status": "loaded"}


@router.delete("/adapters/{name}", summary="Unload an adapter from the engine; the store keeps it")
async def unload_adapter(name: str, service: Service) -> dict[str, list[str]]:
    return {"unloaded": await service.catalog.unload(name)}


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
