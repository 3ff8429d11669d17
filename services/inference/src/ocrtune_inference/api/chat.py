"""OpenAI-compatible ``POST /v1/chat/completions``: ``model`` names an adapter (or the base model).

Clients that already speak the protocol send one user message with an image part
(a ``data:`` URL or ``https://``) and optional text (the instruction).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Literal

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from ocrtune_inference.api.dependencies import Service
from ocrtune_inference.api.errors import ERROR_RESPONSES
from ocrtune_inference.api.uploads import load_source
from ocrtune_inference.documents import load_pages
from ocrtune_shared.errors import ErrorCode, ServiceError
from ocrtune_shared.ocr import OCROptions, TokenLogprob

router = APIRouter(tags=["openai"])


class ImageURL(BaseModel):
    url: str


class ContentPart(BaseModel):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageURL | None = None


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model: str = Field(description="An adapter (name or name@version), or the served base model's name")
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=8192)
    # OCR decodes greedily and answers once: these are accepted only at the values that mean so.
    temperature: float | None = Field(default=None, ge=0, le=0, description="0 or absent: OCR decodes greedily")
    n: int | None = Field(default=None, ge=1, le=1, description="1 or absent: one transcription per image")
    stream: bool = False
    stream_options: StreamOptions | None = Field(default=None, description="With stream: include_usage")
    logprobs: bool = Field(default=False, description="Return each output token's log-probability")
    top_logprobs: int | None = Field(
        default=None, ge=0, le=20, description="With logprobs: this many most likely tokens at each position"
    )

    model_config = {
        # A field we do not implement is refused by name, not silently ignored.
        "extra": "forbid",
        "json_schema_extra": {
            "examples": [
                {
                    "model": "invoices-zh",
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo..."}},
                                {"type": "text", "text": "Free OCR."},
                            ],
                        }
                    ],
                }
            ]
        }
    }


class ChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatTopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatTokenLogprob(ChatTopLogprob):
    top_logprobs: list[ChatTopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[ChatTokenLogprob] | None
    refusal: list[ChatTokenLogprob] | None = None


class Choice(BaseModel):
    index: int = 0
    message: ChoiceMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: ChatUsage


def _openai_logprobs(tokens: list[TokenLogprob] | None, top: int) -> ChoiceLogprobs | None:
    """Our per-token log-probabilities in OpenAI's ``choices[].logprobs`` shape."""
    if tokens is None:
        return None
    return ChoiceLogprobs(content=[
        ChatTokenLogprob(
            token=t.token, logprob=t.logprob, bytes=list(t.token.encode()),
            top_logprobs=[ChatTopLogprob(token=a.token, logprob=a.logprob, bytes=list(a.token.encode()))
                          for a in t.top_logprobs[:top]],
        )
        for t in tokens
    ])


def _image_and_instruction(request: ChatCompletionRequest) -> tuple[str, str]:
    user = [m for m in request.messages if m.role == "user"]
    if not user:
        raise ServiceError(422, ErrorCode.invalid_request, "a user message is required", "messages")
    content = user[-1].content
    parts = [ContentPart(type="text", text=content)] if isinstance(content, str) else content
    images = [p.image_url.url for p in parts if p.type == "image_url" and p.image_url is not None]
    if len(images) != 1:
        raise ServiceError(
            422, ErrorCode.invalid_request, f"the user message must hold exactly one image_url part, not {len(images)}",
            "messages",
        )
    instruction = " ".join(p.text for p in parts if p.type == "text" and p.text).strip()
    return images[0], instruction


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses=ERROR_RESPONSES,
    summary="OCR through the OpenAI chat protocol; model = adapter",
)
async def chat_completions(body: ChatCompletionRequest, request: Request, service: Service):
    settings = request.app.state.settings
    if body.stream_options is not None and not body.stream:
        raise ServiceError(422, ErrorCode.invalid_request, "stream_options is only allowed with stream: true",
                           "stream_options")
    if body.top_logprobs is not None and not body.logprobs:
        raise ServiceError(422, ErrorCode.invalid_request, "top_logprobs is only allowed with logprobs: true",
                           "top_logprobs")
    top = body.top_logprobs or 0
    url, instruction = _image_and_instruction(body)
    adapter = await service.adapter_for(body.model)
    data = await load_source(None, url, settings)
    pages = await asyncio.to_thread(
        load_pages, data, max_pixels=settings.max_image_pixels, max_pages=1, pdf_scale=settings.pdf_render_scale,
        where="image_url",
    )
    options = OCROptions(max_tokens=body.max_completion_tokens or body.max_tokens or 512,
                         logprobs=top if body.logprobs else None)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    model = adapter.ref if adapter else service.model_name
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        async def chunks() -> AsyncIterator[dict[str, str]]:
            import json

            def chunk(choices: list[dict], **extra: object) -> dict[str, str]:
                return {"data": json.dumps({
                    "id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": choices, **extra,
                }, ensure_ascii=False)}

            # As OpenAI and vLLM do: the first chunk names the role, with empty content.
            yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            usage = None
            async for event in service.stream(pages, options, adapter, instruction=instruction):
                delta = {"content": event.delta} if not event.done else {}
                finish = event.response.pages[-1].finish_reason if event.done and event.response else None
                if event.done and event.response:
                    usage = event.response.usage
                choice: dict = {"index": 0, "delta": delta, "finish_reason": finish}
                if body.logprobs:
                    logprobs = _openai_logprobs(event.logprobs or [], top)
                    choice["logprobs"] = logprobs.model_dump() if logprobs and not event.done else None
                yield chunk([choice])
            if include_usage and usage is not None:
                # stream_options.include_usage: one last chunk, no choices, the request's usage.
                yield chunk([], usage={"prompt_tokens": usage.prompt_tokens,
                                       "completion_tokens": usage.completion_tokens,
                                       "total_tokens": usage.prompt_tokens + usage.completion_tokens})
            yield {"data": "[DONE]"}

        return EventSourceResponse(chunks())
    result = await service.recognize(pages, options, adapter, instruction=instruction)
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=model,
        choices=[Choice(message=ChoiceMessage(content=result.text), finish_reason=result.pages[0].finish_reason,
                        logprobs=_openai_logprobs(result.pages[0].logprobs, top))],
        usage=ChatUsage(
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            total_tokens=result.usage.prompt_tokens + result.usage.completion_tokens,
        ),
    )


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
