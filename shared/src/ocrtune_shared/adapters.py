"""The adapter store's manifest and the inference service's view of adapters.

Store layout (a shared volume, or an fsspec URL mirrored to a local cache)::

    <root>/<name>/<version>/adapter_config.json
    <root>/<name>/<version>/adapter_model.safetensors
    <root>/<name>/<version>/manifest.json

A version folder appears by one atomic rename, so a reader never sees half of one.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from ocrtune_shared.cer import CERResult
from ocrtune_shared.names import AdapterName

MANIFEST_FILE = "manifest.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"


class ServingLayout(str, Enum):
    """How the adapter's tensor names are laid out."""

    peft = "peft"
    """PEFT names as transformers' modules are named; vLLM maps them as they are (e.g. Qwen2-VL)."""
    vllm_deepseek_ocr = "vllm_deepseek_ocr"
    """Renamed at publish so that vLLM's DeepSeek-OCR mapper lands every tensor on a module."""


class AdapterManifest(BaseModel):
    format_version: int = 1
    name: AdapterName
    version: int = Field(ge=1)
    base_model: str = Field(description="Model id or path the adapter was trained on")
    base_model_revision: str | None = None
    model_family: str = Field(description="A family of ocrtune_shared.families: qwen2_vl, deepseek_ocr, deepseek_ocr2")
    rank: int = Field(ge=1)
    alpha: int = Field(ge=1)
    target_modules: list[str]
    serving_layout: ServingLayout = ServingLayout.peft
    created_at: datetime
    job_id: str | None = None
    dataset_fingerprint: str | None = Field(default=None, description="sha256 over the training rows")
    cer_before: CERResult | None = None
    cer_after: CERResult | None = None
    files: dict[str, str] = Field(default_factory=dict, description="file name -> sha256, for completeness checks")

    @field_validator("model_family")
    @classmethod
    def _known_family(cls, name: str) -> str:
        # Imported here: the registry itself imports this module (ServingLayout).
        from ocrtune_shared.families import family_named

        try:
            return family_named(name).name
        except LookupError as exc:
            raise ValueError(str(exc)) from None


class AdapterState(str, Enum):
    stored = "stored"
    """In the store, not loaded."""
    cpu = "cpu"
    """Loaded in the engine's CPU cache."""
    device = "device"
    """In a device LoRA slot."""


class AdapterInfo(BaseModel):
    name: AdapterName
    version: int
    latest: bool
    state: AdapterState
    base_model: str
    rank: int
    cer_before: CERResult | None = None
    cer_after: CERResult | None = None
    requests: int = 0


class AdapterList(BaseModel):
    adapters: list[AdapterInfo]


class AdapterLoadResponse(BaseModel):
    """The answer of ``POST /adapters/{name}/load``: the version that is now loaded."""

    adapter: str = Field(description="name@version")
    status: Literal["loaded"] = "loaded"


class AdapterUnloadResponse(BaseModel):
    """The answer of ``DELETE /adapters/{name}``: the versions taken out of the engine (the store keeps them)."""

    unloaded: list[str] = Field(description="name@version of each version unloaded; empty when none was loaded")
