"""The one error body every service returns for every 4xx/5xx."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field


class ErrorCode(str, Enum):
    invalid_request = "invalid_request"
    invalid_image = "invalid_image"
    payload_too_large = "payload_too_large"
    unsupported_media_type = "unsupported_media_type"
    adapter_not_found = "adapter_not_found"
    adapter_incompatible = "adapter_incompatible"
    adapter_invalid = "adapter_invalid"
    job_not_found = "job_not_found"
    job_conflict = "job_conflict"
    dataset_invalid = "dataset_invalid"
    dataset_unreachable = "dataset_unreachable"
    uri_not_allowed = "uri_not_allowed"
    unauthorized = "unauthorized"
    not_ready = "not_ready"
    internal = "internal"


class ErrorBody(BaseModel):
    code: ErrorCode
    message: str = Field(description="What went wrong, in words a user can act on")
    where: str | None = Field(
        default=None,
        description="Where it went wrong: a request field, a dataset row ('train.parquet row 17'), a file, an adapter",
    )


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_responses(described: dict[int, str | None]) -> dict[int | str, dict]:
    """FastAPI ``responses`` for error statuses: each an ``ErrorResponse``, with its description when given."""
    return {
        status: {"model": ErrorResponse, **({"description": text} if text else {})}
        for status, text in described.items()
    }


class ServiceError(Exception):
    """Raised by service logic; rendered as an ``ErrorResponse`` in one place per service."""

    def __init__(self, status: int, code: ErrorCode, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(code=code, message=message, where=where)

    def response(self) -> ErrorResponse:
        return ErrorResponse(error=self.body)
