"""The trainer's one settings class: environment variables prefixed ``OCRTUNE_TRAINER_``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ocrtune_shared.finetune import DEFAULT_BASE_MODEL
from ocrtune_shared.store import is_remote_store

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "ocrtune" / "trainer"


class Precision(str, Enum):
    auto = "auto"
    """bf16 on a GPU that supports it, float32 elsewhere."""
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


def _split_list(value: object) -> object:
    # Lists come from the environment as "a,b" (or "a:b" for paths, the way PATH is written).
    if isinstance(value, str):
        parts = [p.strip() for chunk in value.split(",") for p in chunk.split(":")] if value else []
        return [p for p in parts if p]
    return value


class TrainerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OCRTUNE_TRAINER_", extra="ignore")

    base_model: str = Field(
        default=DEFAULT_BASE_MODEL,
        description="Path or hub id of the base model, used when a job names none",
    )
    data_dir: Path = Field(default=DEFAULT_DATA_DIR, description="Job work folders and the default SQLite file")
    adapter_store: str | Path = Field(
        default=DEFAULT_DATA_DIR / "adapters",
        description="Root the inference service reads: a folder, or an fsspec URL such as s3://bucket/prefix "
        "(S3-compatible servers through AWS_ENDPOINT_URL)",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///<data_dir>/jobs.db, or postgresql+psycopg://..."
    )
    data_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Local folders that local/file:// dataset URIs may point into"
    )
    host: str = "127.0.0.1"
    port: int = 8001
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="When set, every job endpoint needs 'Authorization: Bearer <key>'"
    )
    inference_url: str | None = Field(
        default=None,
        description="After publishing, POST {inference_url}/adapters/{name}@{version}/load to warm the new version",
    )
    inference_public_url: str | None = Field(
        default=None,
        description="The inference service's URL as a browser reaches it, for the web console's links to its "
        "playground (/ui/); default: inference_url",
    )
    max_dataset_upload_bytes: int = Field(
        default=2 * 1024**3, ge=1, description="Largest dataset file POST /datasets (the console's upload) accepts"
    )
    # A plain str like api_keys: the settings reach the worker process serialized, and a
    # SecretStr would arrive there as '**********'.
    inference_api_key: str | None = Field(
        default=None, description="The inference service's API key, when it has keys on (sent as a Bearer token)"
    )
    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:N")
    precision: Precision = Precision.auto
    training_processes: int = Field(
        default=0, ge=0,
        description="Processes that train one job together (DDP through torchrun, one per GPU; gloo on the CPU). "
        "0: one per GPU the worker is given (CUDA_VISIBLE_DEVICES), 1 on the CPU or with DEVICE=cuda:N. "
        "A step's samples are shared by them, so a job trains the same on any number",
    )
    gradient_checkpointing: bool = Field(default=False, description="Trade compute for memory on large models")
    torch_threads: int | None = Field(default=None, ge=1, description="CPU threads for torch in the worker")
    dataloader_workers: int = Field(
        default=0, ge=0,
        description="Processes that decode and collate images beside training (0: in the training process; "
        "on the H200 collation was 8 ms of a 700 ms step, and 4 workers changed nothing)",
    )
    max_micro_batch: int = Field(
        default=8, ge=1,
        description="Samples in one forward pass: a step's per_device_batch_size x gradient_accumulation_steps "
        "samples are regrouped into micro-batches of up to this size (same samples and loss per step; "
        "2.6-3.8x the samples/s of 2 x 4 at full size on an H100, at 1.11-1.15x its peak memory; with "
        "gradient_checkpointing 2.1-2.2x at 0.61-0.93x). 1: as the job asks",
    )
    run_worker: bool = Field(default=True, description="Start and supervise the worker process with the API")
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (MinIO, moto) for s3:// URIs")
    max_download_bytes: int = Field(default=20 * 1024**3, ge=1)
    allow_private_urls: bool = Field(
        default=False,
        description="Let http(s) dataset URIs reach loopback and private-network addresses (127.0.0.0/8, 10.0.0.0/8, "
        "192.168.0.0/16, fc00::/7, ...); off, only public addresses are fetched. Cloud metadata and link-local "
        "addresses are refused either way",
    )
    max_extract_bytes: int = Field(default=40 * 1024**3, ge=1, description="Total size an archive may unpack to")
    max_rows: int = Field(default=200_000, ge=1, description="Rows a dataset may bring when max_samples is unset")
    eval_batch_size: int = Field(default=8, ge=1)
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    heartbeat_timeout_s: float = Field(default=60.0, gt=0, description="A worker silent this long is taken as dead")
    poll_interval_s: float = Field(default=0.5, gt=0)
    keep_job_files: bool = Field(
        default=False,
        description="Keep each job's work folder (rows, checkpoints) after it ends; while a job can still resume, "
        "its folder is always kept",
    )
    max_resumes: int = Field(
        default=3, ge=0,
        description="Times a job whose worker died is resumed from its last checkpoint before it is failed "
        "(a job that keeps killing its worker must end); 0: never resume",
    )

    @field_validator("data_roots", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        # Keys may contain ':'; only commas separate them.
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'jobs.db'}"

    @field_validator("adapter_store", mode="after")
    @classmethod
    def _folder_or_url(cls, value: str | Path) -> str | Path:
        return str(value) if is_remote_store(value) else Path(value)

    @property
    def local_adapter_store(self) -> Path:
        """Where adapters are published first: the store itself, or an outbox uploaded from for a remote store."""
        if is_remote_store(self.adapter_store):
            return self.data_dir / "adapter-outbox"
        return Path(self.adapter_store)

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def tensorboard_dir(self) -> Path:
        """Jobs with report_to tensorboard log here, one folder per job id (kept after the job ends):
        ``tensorboard --logdir <data_dir>/tensorboard``."""
        return self.data_dir / "tensorboard"

    @property
    def uploads_dir(self) -> Path:
        """Datasets uploaded through POST /datasets; local dataset URIs may always point here."""
        return self.data_dir / "uploads"
