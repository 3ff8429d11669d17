"""Fine-tune requests (trainer service).

The request IS the training recipe: the defaults below are the reference
notebook's hyper-parameters (docs/models.md, "The reference recipe"), every one overridable.
The trainer turns this model into its trainer config; nothing is re-declared.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from ocrtune_shared.names import AdapterName

REFERENCE_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ALLOWED_URI_SCHEMES = ("", "file", "hf", "s3", "https", "http")
REFERENCE_MAX_STEPS = 60
DEFAULT_SAVE_STEPS = 500
"""transformers' default save interval, the one the reference notebook trains with."""
ReportTarget = Literal["tensorboard"]
"""Where training metrics may also go; the trainer refuses one whose package is not installed."""


class DatasetFormat(str, Enum):
    auto = "auto"
    parquet = "parquet"
    jsonl = "jsonl"
    csv = "csv"
    image_folder = "image_folder"
    """A folder of images with a labels file (TSV/CSV/JSONL: image path -> text)."""
    hf_disk = "hf_disk"
    """A folder written by datasets' ``save_to_disk``."""


class ColumnMapping(BaseModel):
    image: str = Field(default="image", description="Column holding encoded image bytes (HF Image feature)")
    text: str = Field(default="text", description="Column holding the ground-truth text")
    image_path: str | None = Field(
        default=None, description="Column holding an image path relative to the dataset, instead of bytes"
    )


class DatasetSpec(BaseModel):
    uri: str = Field(
        description="Local path, file://, hf://datasets/<repo>[/<file>], s3://bucket/key, or https:// URL; "
        "a file, a folder or a zip/tar archive"
    )
    format: DatasetFormat = DatasetFormat.auto
    columns: ColumnMapping = Field(default_factory=ColumnMapping)
    split: str = "train"
    max_samples: int | None = Field(default=None, ge=1, description="Use only the first N rows")

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        uri = uri.strip()
        if not uri:
            raise ValueError("dataset uri is empty")
        scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
        if scheme not in ALLOWED_URI_SCHEMES:
            raise ValueError(f"dataset uri scheme {scheme!r} is not one of file, hf, s3, https")
        return uri


class LoraBias(str, Enum):
    none = "none"
    all = "all"
    lora_only = "lora_only"


DEFAULT_BASE_MODEL = "deepseek-ai/DeepSeek-OCR-2"
"""The base model both services use when none is configured: one default, so services
started by hand serve the adapters the trainer makes (a mismatch is a 409 at load)."""


class HyperParameters(BaseModel):
    rank: int = Field(default=16, ge=1, le=256)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    bias: LoraBias = LoraBias.none
    target_modules: list[str] = Field(
        default_factory=lambda: list(REFERENCE_TARGET_MODULES),
        description="Module names on the language model; 'experts' adds the routed MoE experts",
    )
    max_steps: int | None = Field(
        default=None, ge=1, le=100_000,
        description=f"Optimizer steps. null: {REFERENCE_MAX_STEPS} (the reference recipe), unless num_train_epochs is given",
    )
    num_train_epochs: float | None = Field(
        default=None, gt=0, le=10_000,
        description="Passes over the train rows, instead of max_steps (give one of the two)",
    )
    warmup_steps: int = Field(default=5, ge=0)
    learning_rate: float = Field(default=2e-4, gt=0.0, le=1.0)
    lr_scheduler: str = "linear"
    weight_decay: float = Field(default=0.001, ge=0.0)
    per_device_batch_size: int = Field(default=2, ge=1, le=512)
    gradient_accumulation_steps: int = Field(default=4, ge=1, le=1024)
    optimizer: str = Field(default="adamw_8bit", description="adamw_8bit falls back to adamw_torch without bitsandbytes")
    seed: int = 3407
    max_new_tokens: int = Field(default=256, ge=1, le=8192, description="Generation length for the CER evaluation")

    eval_steps: int | None = Field(
        default=None, ge=1, description="Validation loss on the eval rows every N steps (eval_loss_curve); null: none"
    )
    early_stopping_patience: int | None = Field(
        default=None, ge=1,
        description="Stop after this many evaluations without an eval loss better by early_stopping_threshold; "
        "the adapter is then the best checkpoint's. Needs eval_steps",
    )
    early_stopping_threshold: float = Field(default=0.0, ge=0.0, description="How much lower an eval loss must be")
    save_steps: int | None = Field(
        default=None, ge=1, validate_default=True,
        description=f"Checkpoint every N steps; a job whose worker dies resumes from its last checkpoint. null: every "
        f"{DEFAULT_SAVE_STEPS} steps, or every eval_steps with early stopping (which keeps the best checkpoint)",
    )
    save_total_limit: int = Field(default=2, ge=1, le=100, description="Checkpoints kept on disk (the newest)")
    report_to: list[ReportTarget] = Field(
        default_factory=list, description="Also log training metrics there (tensorboard: under the trainer's data dir)"
    )

    @field_validator("num_train_epochs")
    @classmethod
    def _epochs_or_steps(cls, epochs: float | None, info: ValidationInfo) -> float | None:
        steps = info.data.get("max_steps")
        if epochs is not None and steps is not None:
            raise ValueError(f"give max_steps ({steps}) or num_train_epochs, not both: set max_steps to null")
        return epochs

    @field_validator("early_stopping_patience")
    @classmethod
    def _patience_needs_eval(cls, patience: int | None, info: ValidationInfo) -> int | None:
        if patience is not None and "eval_steps" in info.data and info.data["eval_steps"] is None:
            raise ValueError("early stopping needs eval_steps: the eval loss it watches")
        return patience

    @field_validator("save_steps")
    @classmethod
    def _save_steps(cls, steps: int | None, info: ValidationInfo) -> int | None:
        # Early stopping keeps the best checkpoint, so checkpoints must fall on evaluation steps.
        eval_steps = info.data.get("eval_steps")
        early = info.data.get("early_stopping_patience") is not None
        if steps is None:
            return eval_steps if early and eval_steps else DEFAULT_SAVE_STEPS
        if early and eval_steps and steps % eval_steps:
            raise ValueError(
                f"with early stopping, save_steps ({steps}) must be a multiple of eval_steps ({eval_steps}), "
                "or left out"
            )
        return steps

    @field_validator("report_to")
    @classmethod
    def _distinct_targets(cls, targets: list[str]) -> list[str]:
        return list(dict.fromkeys(targets))

    @model_validator(mode="after")
    def _steps_by_default(self) -> HyperParameters:
        if self.max_steps is None and self.num_train_epochs is None:
            self.max_steps = REFERENCE_MAX_STEPS
        return self

    @field_validator("target_modules")
    @classmethod
    def _non_empty_names(cls, modules: list[str]) -> list[str]:
        if not modules:
            raise ValueError("target_modules must name at least one module")
        for name in modules:
            if not name.replace("_", "").isalnum():
                raise ValueError(f"target module {name!r} must be a plain module name like 'q_proj'")
        return modules

    @field_validator("lr_scheduler")
    @classmethod
    def _known_scheduler(cls, name: str) -> str:
        known = {"linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"}
        if name not in known:
            raise ValueError(f"lr_scheduler {name!r} is not one of {sorted(known)}")
        return name

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, name: str) -> str:
        known = {"adamw_8bit", "adamw_torch", "adamw_torch_fused", "sgd", "adafactor"}
        if name not in known:
            raise ValueError(f"optimizer {name!r} is not one of {sorted(known)}")
        return name


class FinetuneRequest(BaseModel):
    adapter_name: AdapterName
    base_model: str | None = Field(default=None, description="None: the trainer's configured base model")
    train: DatasetSpec
    eval: DatasetSpec | None = Field(default=None, description="None: hold out eval_fraction of train")
    eval_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    max_eval_samples: int = Field(default=200, ge=1)
    prompt: str = Field(default="Free OCR.", max_length=2000)
    hyperparameters: HyperParameters = Field(default_factory=HyperParameters)
    export_merged: bool = Field(default=False, description="Also write merged 16-bit weights beside the adapter")

    @model_validator(mode="after")
    def _warmup_within_steps(self) -> FinetuneRequest:
        hp = self.hyperparameters
        if hp.max_steps is not None and hp.warmup_steps > hp.max_steps:
            raise ValueError(f"warmup_steps ({hp.warmup_steps}) exceeds max_steps ({hp.max_steps})")
        return self

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "adapter_name": "invoices-zh",
                    "train": {"uri": "s3://datasets/invoices/train.parquet"},
                    "hyperparameters": {"max_steps": 60},
                }
            ]
        }
    }
