"""``POST /v1/chat/completions``: OCR through OpenAI's chat protocol (``ocrtune_inference.chat``)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from sse_starlette import EventSourceResponse

from ocrtune_inference import chat
from ocrtune_inference.api.dependencies import Service
from ocrtune_inference.api.errors import ERROR_RESPONSES
from ocrtune_inference.openai_protocol import ChatCompletion, ChatCompletionRequest

router = APIRouter(tags=["openai"])


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses=ERROR_RESPONSES,
    summary="OCR through the OpenAI chat protocol; model = adapter",
)
async def chat_completions(body: ChatCompletionRequest, request: Request, service: Service):
    turn = await chat.read_turn(body, service, request.app.state.settings)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return EventSourceResponse(chat.stream(turn, service, include_usage))
    return await chat.complete(turn, service)


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
