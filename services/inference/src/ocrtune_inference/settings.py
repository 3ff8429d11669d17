"""The inference service's configuration: one class, read from ``OCRTUNE_INFERENCE_*``."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ocrtune_shared.finetune import DEFAULT_BASE_MODEL


class InferenceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OCRTUNE_INFERENCE_", protected_namespaces=())

    model: str = Field(default=DEFAULT_BASE_MODEL, description="Base model: a local folder or a hub id")
    served_model_name: str | None = Field(default=None, description="Name reported to clients; default: MODEL")
    adapter_store: str = Field(default="./adapters", description="Store root: a folder, or an fsspec URL (s3://...)")
    adapter_cache_dir: str = Field(
        default="~/.cache/ocrtune/adapter-mirror", description="Local mirror of a remote (fsspec) store"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    max_loras: int = Field(default=4, ge=1, description="Adapters in one batch (device slots)")
    max_cpu_loras: int = Field(default=16, ge=1, description="Adapters kept loaded in the engine's CPU cache")
    max_lora_rank: int = Field(default=16, ge=1)
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_adapter_bytes: int = Field(
        default=2 * 1024**3, ge=1, description="POST /adapters: the archive, and what it unpacks to"
    )
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    max_pdf_pages: int = Field(default=50, ge=1)
    pdf_render_scale: float = Field(default=2.0, gt=0, le=8, description="PDF points to pixels (2.0 = 144 dpi)")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated; empty: no authentication (local use)"
    )

    access_log: bool = Field(default=False, description="uvicorn's per-request log line (costs CPU at high rates)")
    dtype: str = "auto"
    max_model_len: int = Field(default=4096, ge=16)
    max_num_seqs: int = Field(default=64, ge=1)
    max_num_batched_tokens: int | None = Field(
        default=None, ge=16,
        description="Tokens one engine step may schedule (prefill chunks, and the image encoder's budget);"
        " vLLM's default (2048 on a GPU) encodes only a few images a step",
    )
    gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)
    enforce_eager: bool = Field(default=False, description="Always on for the CPU engine")
    url_fetch_timeout_s: float = Field(default=20.0, gt=0)
    allow_private_urls: bool = Field(
        default=False,
        description="Let image_url reach loopback and private-network addresses (127.0.0.0/8, 10.0.0.0/8, "
        "192.168.0.0/16, fc00::/7, ...); off, only public addresses are fetched. Cloud metadata and link-local "
        "addresses are refused either way",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.model
