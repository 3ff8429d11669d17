"""Wire models of the web consoles and the dataset upload (``POST /datasets`` on the trainer).

The consoles are static pages served by each service under ``/ui/``
(``ocrtune_shared.web_console``); what they cannot learn from the public API they read
from ``GET /console`` on the trainer, described here.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from ocrtune_shared.finetune import DatasetFormat, FinetuneRequest, HyperParameters


class RecipeDefaults(BaseModel):
    """The defaults of ``FinetuneRequest``: what a job gets for every field it leaves out."""

    prompt: str
    eval_fraction: float
    max_eval_samples: int
    hyperparameters: HyperParameters


def recipe_defaults() -> RecipeDefaults:
    """Read from ``FinetuneRequest`` itself, so the console shows the defaults a job really gets."""
    fields = FinetuneRequest.model_fields
    return RecipeDefaults(
        prompt=fields["prompt"].default,
        eval_fraction=fields["eval_fraction"].default,
        max_eval_samples=fields["max_eval_samples"].default,
        hyperparameters=HyperParameters(),
    )


class ConsoleConfig(BaseModel):
    """``GET /console`` on the trainer: the service settings its dashboard needs."""

    base_model: str = Field(description="The base model of jobs that name none")
    playground_url: str | None = Field(
        description="The inference service's playground (its /ui/) as a browser reaches it; null: not configured"
    )
    max_dataset_upload_bytes: int = Field(description="Largest file POST /datasets accepts")
    recipe: RecipeDefaults


class DatasetUpload(BaseModel):
    """``POST /datasets``: an uploaded dataset, stored by the trainer, ready for ``POST /finetune``."""

    uri: str = Field(description="Pass as train.uri or eval.uri of POST /finetune")
    filename: str = Field(description="The uploaded file's name")
    bytes: int = Field(ge=0, description="Size of the uploaded file")
    sha256: str = Field(description="Of the uploaded file")
    format: DatasetFormat = Field(description="The layout found (parquet, image_folder, ...)")
    rows: int | None = Field(
        default=None, description="Rows of a parquet upload (from its footer); null for archives, counted by the job"
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "uri": "/var/lib/ocrtune/uploads/5f0c2e.../train.parquet",
                    "filename": "train.parquet",
                    "bytes": 1843200,
                    "sha256": "9b1d...",
                    "format": "parquet",
                    "rows": 240,
                }
            ]
        }
    }
