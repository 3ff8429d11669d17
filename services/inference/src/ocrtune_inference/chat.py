"""Chat completions: an OCR request in OpenAI's chat protocol, answered whole or as stream chunks.

``model`` names an adapter (or the served base model). Clients that already speak the protocol
send one user message with an image part (a ``data:`` URL or ``https://``) and optional text,
the instruction that replaces the task's prompt.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from PIL import Image

from ocrtune_inference.catalog import ServedAdapter
from ocrtune_inference.documents import load_pages
from ocrtune_inference.inputs import load_source
from ocrtune_inference.ocr import OCRService
from ocrtune_inference.openai_protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    ChatTokenLogprob,
    ChatTopLogprob,
    ChatUsage,
    Choice,
    ChoiceLogprobs,
    ChoiceMessage,
    ContentPart,
)
from ocrtune_inference.settings import InferenceSettings
from ocrtune_shared.errors import ErrorCode, ServiceError
from ocrtune_shared.ocr import OCROptions, TokenLogprob


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


@dataclass
class ChatTurn:
    """A validated request: its page, adapter, instruction and options, and the answer's identity."""

    page: Image.Image
    adapter: ServedAdapter | None
    instruction: str
    options: OCROptions
    model: str
    top_logprobs: int | None
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))


async def read_turn(body: ChatCompletionRequest, service: OCRService, settings: InferenceSettings) -> ChatTurn:
    """Check what the protocol allows, fetch and decode the image, resolve the adapter."""
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
                         logprobs=top if body.logprobs else None,
                         json_schema=body.response_format.schema_to_follow() if body.response_format else None)
    return ChatTurn(page=pages[0], adapter=adapter, instruction=instruction, options=options,
                    model=adapter.ref if adapter else service.model_name,
                    top_logprobs=top if body.logprobs else None)


async def complete(turn: ChatTurn, service: OCRService) -> ChatCompletion:
    result = await service.recognize([turn.page], turn.options, turn.adapter, instruction=turn.instruction)
    page = result.pages[0]
    logprobs = _openai_logprobs(page.logprobs, turn.top_logprobs or 0) if turn.top_logprobs is not None else None
    return ChatCompletion(
        id=turn.id,
        created=turn.created,
        model=turn.model,
        choices=[Choice(message=ChoiceMessage(content=result.text), finish_reason=page.finish_reason, logprobs=logprobs)],
        usage=ChatUsage(
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            total_tokens=result.usage.prompt_tokens + result.usage.completion_tokens,
        ),
    )


async def stream(turn: ChatTurn, service: OCRService, include_usage: bool) -> AsyncIterator[dict[str, str]]:
    """Server-sent chunks as OpenAI and vLLM send them: role first, deltas, finish, usage if asked, [DONE]."""

    def chunk(choices: list[dict], **extra: object) -> dict[str, str]:
        return {"data": json.dumps({
            "id": turn.id, "object": "chat.completion.chunk", "created": turn.created, "model": turn.model,
            "choices": choices, **extra,
        }, ensure_ascii=False)}

    yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    usage = None
    async for event in service.stream([turn.page], turn.options, turn.adapter, instruction=turn.instruction):
        delta = {"content": event.delta} if not event.done else {}
        finish = event.response.pages[-1].finish_reason if event.done and event.response else None
        if event.done and event.response:
            usage = event.response.usage
        choice: dict = {"index": 0, "delta": delta, "finish_reason": finish}
        if turn.top_logprobs is not None:
            logprobs = _openai_logprobs(event.logprobs or [], turn.top_logprobs)
            choice["logprobs"] = logprobs.model_dump() if logprobs and not event.done else None
        yield chunk([choice])
    if include_usage and usage is not None:
        # stream_options.include_usage: one last chunk, no choices, the request's usage.
        yield chunk([], usage={"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                               "total_tokens": usage.prompt_tokens + usage.completion_tokens})
    yield {"data": "[DONE]"}
