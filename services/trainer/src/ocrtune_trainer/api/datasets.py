"""``POST /datasets``: upload a dataset file for jobs to train on (the web console's upload)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request

from ocrtune_shared.console import DatasetUpload
from ocrtune_shared.errors import error_responses
from ocrtune_trainer.api.finetune import require_api_key
from ocrtune_trainer.dataset_uploads import receive_dataset

router = APIRouter(
    prefix="/datasets",
    tags=["datasets"],
    dependencies=[Depends(require_api_key)],
    responses=error_responses({
        400: "Malformed multipart body",
        401: "Missing or wrong API key",
        413: "Larger than max_dataset_upload_bytes (or unpacks to more than max_extract_bytes)",
        415: "Not a parquet file or a zip/tar archive",
        422: "No file, or a file no job could read",
    }),
)

# The body is read by hand (within the size limit), so its schema is declared here.
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "A .parquet file (columns image, text), or a zip/tar of an image "
                            "folder with its labels file",
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=DatasetUpload,
    summary="Upload a dataset file; the answer's uri goes in POST /finetune's train.uri or eval.uri",
    openapi_extra=UPLOAD_BODY,
)
async def upload_dataset(request: Request) -> DatasetUpload:
    return await receive_dataset(request, request.app.state.settings)


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
