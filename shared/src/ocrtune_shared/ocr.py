"""OCR requests and responses (inference service)."""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator


class OCRTask(str, Enum):
    free_ocr = "free_ocr"
    """Plain text, DeepSeek's ``Free OCR.`` prompt."""
    markdown = "markdown"
    """Layout as markdown, DeepSeek's ``<|grounding|>Convert the document to markdown.`` prompt."""


class ResolutionMode(str, Enum):
    """DeepSeek-OCR resolution modes; models without modes ignore all but ``auto``."""

    auto = "auto"
    tiny = "tiny"
    small = "small"
    base = "base"
    large = "large"
    gundam = "gundam"


class OCROptions(BaseModel):
    """Options of one OCR request, whatever carries the image (multipart or JSON)."""

    task: OCRTask = OCRTask.free_ocr
    prompt: str | None = Field(default=None, max_length=2000, description="Overrides the task's prompt")
    resolution: ResolutionMode = ResolutionMode.auto
    max_tokens: int = Field(default=512, ge=1, le=8192)
    stream: bool = False
    logprobs: int | None = Field(
        default=None, ge=0, le=20,
        description="Also return each generated token's log-probability (a confidence per character) and this"
        " many most likely alternatives; absent: none",
    )
    json_schema: dict[str, Any] | None = Field(
        default=None,
        description="Constrain the answer to JSON valid against this JSON Schema (e.g. the fields of an invoice);"
        " decoding follows it token by token (vLLM structured outputs)",
    )

    @field_validator("json_schema", mode="before")
    @classmethod
    def _schema_from_form_text(cls, value: Any) -> Any:
        # A multipart form carries the schema as text.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(f"json_schema is not JSON: {exc}") from None
        return value


class OCRJSONRequest(OCROptions):
    """``POST /ocr`` with a JSON body: exactly one of ``image_base64`` or ``image_url``."""

    image_base64: str | None = Field(default=None, description="An image or PDF, base64-encoded")
    image_url: str | None = Field(default=None, description="An https:// URL of an image or PDF")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> OCRJSONRequest:
        if (self.image_base64 is None) == (self.image_url is None):
            raise ValueError("give exactly one of image_base64 or image_url")
        return self

    model_config = {
        "json_schema_extra": {
            "examples": [{"image_base64": "iVBORw0KGgo...", "task": "free_ocr", "max_tokens": 256}]
        }
    }


class TopLogprob(BaseModel):
    token: str
    logprob: float


class TokenLogprob(BaseModel):
    """One generated token: its text, its log-probability, and the most likely tokens at its place."""

    token: str
    logprob: float
    top_logprobs: list[TopLogprob] = Field(default_factory=list, description="Best first; the chosen one included")


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class PageResult(BaseModel):
    page: int = Field(ge=1, description="1 for an image; the page number for a PDF")
    text: str
    usage: Usage
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] | None = Field(default=None, description="Per generated token, when asked for")


class OCRResponse(BaseModel):
    text: str = Field(description="All pages' text, joined by a form feed for PDFs")
    pages: list[PageResult]
    model: str = Field(description="The served base model")
    adapter: str | None = Field(description="'name@version' of the adapter used, or null for the base model")
    usage: Usage
    latency_ms: float

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "text": "一二三 123",
                    "pages": [{"page": 1, "text": "一二三 123", "usage": {"prompt_tokens": 48, "completion_tokens": 8}}],
                    "model": "deepseek-ai/DeepSeek-OCR-2",
                    "adapter": "invoices@3",
                    "usage": {"prompt_tokens": 48, "completion_tokens": 8},
                    "latency_ms": 61.2,
                }
            ]
        }
    }


class OCRStreamEvent(BaseModel):
    """One server-sent event of a streamed OCR: text deltas, then a final ``done`` with the response."""

    page: int
    delta: str = ""
    logprobs: list[TokenLogprob] | None = Field(default=None, description="The delta's tokens, when asked for")
    done: bool = False
    response: OCRResponse | None = None
