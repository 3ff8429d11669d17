"""vLLM's OpenAI-server conventions for models and adapters, over our adapter store.

- ``GET /v1/models``: the base model, then each adapter's latest version with ``parent`` = the
  base, as vLLM lists ``--lora-modules``; ``model`` of ``/v1/chat/completions`` takes these ids.
- ``POST /v1/load_lora_adapter`` / ``/v1/unload_lora_adapter``: vLLM's bodies and plain-text
  answers, so its clients and routers (e.g. the production stack's LoRA controller) work as is.
  Adapters come from the store, by ``lora_name``: a ``lora_path`` on the server's disk is refused
  (publish with ``POST /adapters`` or the trainer), so no request makes the server read a path.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse

from ocrtune_inference.api.dependencies import Service
from ocrtune_inference.api.errors import ERROR_RESPONSES
from ocrtune_inference.openai_protocol import LoadLoRAAdapterRequest, ModelCard, ModelList, UnloadLoRAAdapterRequest
from ocrtune_shared.errors import ErrorCode, ServiceError

router = APIRouter(tags=["openai"], responses=ERROR_RESPONSES)


@router.get("/v1/models", response_model=ModelList, summary="The base model and the adapters' latest versions")
async def list_models(service: Service) -> ModelList:
    now = int(time.time())
    cards = [ModelCard(id=service.model_name, created=now, root=service.model_name)]
    listing = await service.catalog.list()
    cards += [
        ModelCard(id=a.name, created=now, root=f"{a.name}@{a.version}", parent=service.model_name)
        for a in sorted(listing.adapters, key=lambda a: a.name)
        if a.latest
    ]
    return ModelList(data=cards)


@router.post("/v1/load_lora_adapter", response_class=PlainTextResponse, summary="vLLM's adapter load, from the store")
async def load_lora_adapter(body: LoadLoRAAdapterRequest, service: Service) -> str:
    if body.lora_path:
        raise ServiceError(
            422,
            ErrorCode.invalid_request,
            "adapters are loaded from the adapter store by lora_name, not from a path on this server: publish it "
            "first (POST /adapters with the PEFT folder as a zip, or a fine-tune job), then load it by name",
            "lora_path",
        )
    adapter = await service.catalog.load(body.lora_name)
    return f"Success: LoRA adapter '{adapter.ref}' added successfully."


@router.post("/v1/unload_lora_adapter", response_class=PlainTextResponse, summary="vLLM's adapter unload")
async def unload_lora_adapter(body: UnloadLoRAAdapterRequest, service: Service) -> str:
    removed = await service.catalog.unload(body.lora_name)
    if not removed:
        raise ServiceError(
            404, ErrorCode.adapter_not_found, f"adapter {body.lora_name!r} is not loaded in the engine", "lora_name"
        )
    return f"Success: LoRA adapter '{body.lora_name}' removed successfully."


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
