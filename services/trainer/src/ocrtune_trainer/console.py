"""What the trainer's web console (``/ui/``) reads besides the jobs API: its settings and the served adapters.

The console talks to this service only (one origin, one API key, no CORS): the adapters
list is the inference service's ``GET /adapters``, fetched here with the trainer's own
inference key, and "try in the playground" is a plain link to the inference service's
``/ui/`` at the URL a browser reaches it by.
"""

from __future__ import annotations

import httpx

from ocrtune_shared.adapters import AdapterList
from ocrtune_shared.console import ConsoleConfig, recipe_defaults
from ocrtune_shared.errors import ErrorCode, ServiceError
from ocrtune_trainer.settings import TrainerSettings

ADAPTERS_TIMEOUT_S = 10.0


def playground_url(settings: TrainerSettings) -> str | None:
    base = settings.inference_public_url or settings.inference_url
    return f"{base.rstrip('/')}/ui/" if base else None


def console_config(settings: TrainerSettings) -> ConsoleConfig:
    return ConsoleConfig(
        base_model=settings.base_model,
        playground_url=playground_url(settings),
        max_dataset_upload_bytes=settings.max_dataset_upload_bytes,
        recipe=recipe_defaults(),
    )


async def served_adapters(settings: TrainerSettings) -> AdapterList:
    """The inference service's adapter list, or a 404/502/503 that says why it could not be read."""
    if not settings.inference_url:
        # 404, not 503: nothing is down; this trainer has no adapter list to show until one is configured.
        raise ServiceError(
            404,
            ErrorCode.not_ready,
            "no inference service is configured: set OCRTUNE_TRAINER_INFERENCE_URL to list its adapters",
            "inference_url",
        )
    url = f"{settings.inference_url.rstrip('/')}/adapters"
    headers = {"Authorization": f"Bearer {settings.inference_api_key}"} if settings.inference_api_key else {}
    try:
        async with httpx.AsyncClient(timeout=ADAPTERS_TIMEOUT_S) as client:
            response = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise ServiceError(
            503, ErrorCode.not_ready, f"the inference service at {url} cannot be reached ({exc or type(exc).__name__})",
            "inference_url",
        ) from None
    if response.status_code != 200:
        try:
            detail = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            detail = response.text[:200] or response.reason_phrase
        hint = " (check OCRTUNE_TRAINER_INFERENCE_API_KEY)" if response.status_code == 401 else ""
        # 502: the trainer's request is fine, its upstream answered with an error.
        raise ServiceError(
            502, ErrorCode.not_ready, f"the inference service answered {response.status_code} to {url}: {detail}{hint}",
            "inference_url",
        )
    try:
        return AdapterList.model_validate_json(response.content)
    except ValueError as exc:
        raise ServiceError(
            502, ErrorCode.not_ready, f"the inference service's adapter list at {url} is not readable: {exc}",
            "inference_url",
        ) from None
