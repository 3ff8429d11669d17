"""The engine: vLLM's in-process ``AsyncLLM`` (continuous batching across base and adapters)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from vllm import SamplingParams
from vllm.lora.request import LoRARequest

from ocrtune_inference.families import EnginePrompt
from ocrtune_shared.ocr import TokenLogprob, TopLogprob


def _request_errors() -> tuple[type[Exception], ...]:
    # What vLLM raises for a request it refuses (prompt too long, an image its processor rejects,
    # a schema its grammar compiler cannot take): ValueError up to 0.26, VLLMClientError (not a
    # ValueError) in 0.32. One place for the difference, answered 422 by the service.
    try:
        from vllm.exceptions import VLLMClientError

        return (ValueError, VLLMClientError)
    except ImportError:
        return (ValueError,)


REQUEST_ERRORS = _request_errors()
"""Exceptions meaning "the engine refused this request", whatever the vLLM version."""


@dataclass(frozen=True)
class Generation:
    """Text decoded so far for one request; ``finished`` on the last one."""

    text: str
    delta: str
    prompt_tokens: int
    completion_tokens: int
    finished: bool
    finish_reason: str | None
    logprobs: list[TokenLogprob] | None = None
    """The delta's tokens, when log-probabilities were asked for."""


def engine_args(settings: Any, model_dir: str, family_kwargs: dict[str, Any]) -> Any:
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.platforms import current_platform

    return AsyncEngineArgs(
        model=model_dir,
        served_model_name=[settings.model_name],
        dtype=settings.dtype,
        max_model_len=settings.max_model_len,
        max_num_seqs=settings.max_num_seqs,
        max_num_batched_tokens=settings.max_num_batched_tokens,
        enable_lora=True,
        max_loras=settings.max_loras,
        max_cpu_loras=max(settings.max_cpu_loras, settings.max_loras),
        max_lora_rank=settings.max_lora_rank,
        limit_mm_per_prompt={"image": 1},
        gpu_memory_utilization=settings.gpu_memory_utilization,
        # CUDA graphs do not exist on the CPU; compiling there only costs start time.
        enforce_eager=settings.enforce_eager or current_platform.is_cpu(),
        enable_log_requests=False,
        **_compact_json_config(),
        **family_kwargs,
    )


class OCREngine:
    def __init__(self, llm: Any) -> None:
        self._llm = llm
        self._ids = itertools.count()
        self.in_flight = 0

    @classmethod
    def start(cls, settings: Any, model_dir: str, family_kwargs: dict[str, Any]) -> OCREngine:
        from vllm.v1.engine.async_llm import AsyncLLM

        return cls(AsyncLLM.from_engine_args(engine_args(settings, model_dir, family_kwargs)))

    @property
    def ready(self) -> bool:
        return not self._llm.errored

    async def generate(
        self, prompt: EnginePrompt, *, max_tokens: int, lora: LoRARequest | None, top_logprobs: int | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> AsyncIterator[Generation]:
        """Greedy decoding of one prompt; yields as text arrives.

        ``top_logprobs``: also report each token's log-probability and that many alternatives
        (0: the token's own only); None: none (vLLM then computes none). ``json_schema``: only
        tokens that keep the answer valid JSON for the schema are allowed (structured outputs).
        """
        params = SamplingParams(
            temperature=0.0, max_tokens=max_tokens, output_kind=_delta_kind(), logprobs=top_logprobs,
            structured_outputs=_structured(json_schema),
        )
        request_id = f"ocr-{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        text, completion_tokens, prompt_tokens = "", 0, 0
        self.in_flight += 1
        try:
            async for output in self._llm.generate(prompt.as_vllm(), params, request_id, lora_request=lora):
                piece = output.outputs[0]
                text += piece.text
                completion_tokens += len(piece.token_ids)
                prompt_tokens = len(output.prompt_token_ids or []) or prompt_tokens
                yield Generation(
                    text=text,
                    delta=piece.text,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    finished=output.finished,
                    finish_reason=piece.finish_reason,
                    logprobs=None if top_logprobs is None
                    else _token_logprobs(piece.token_ids, piece.logprobs, top_logprobs),
                )
        finally:
            self.in_flight -= 1

    async def add_lora(self, lora: LoRARequest) -> bool:
        return await self._llm.add_lora(lora)

    async def remove_lora(self, lora_id: int) -> bool:
        return await self._llm.remove_lora(lora_id)

    async def list_loras(self) -> set[int]:
        return set(await self._llm.list_loras())

    def shutdown(self) -> None:
        self._llm.shutdown()


def _token_logprobs(token_ids: Any, positions: Any, top: int) -> list[TokenLogprob]:
    """vLLM's per-position ``{token id: Logprob}`` (the chosen token plus the top ranks) as ``TokenLogprob``s."""
    out = []
    for token_id, position in zip(token_ids, positions or (), strict=False):
        chosen = position[token_id]
        ranked = sorted((lp for lp in position.values() if lp.rank is not None and lp.rank <= top),
                        key=lambda lp: lp.rank)
        out.append(TokenLogprob(
            token=chosen.decoded_token or "",
            logprob=chosen.logprob,
            top_logprobs=[TopLogprob(token=lp.decoded_token or "", logprob=lp.logprob) for lp in ranked],
        ))
    return out


def _structured(json_schema: dict[str, Any] | None) -> Any:
    if json_schema is None:
        return None
    from vllm.sampling_params import StructuredOutputsParams

    return StructuredOutputsParams(json=json_schema, disable_any_whitespace=True)


def _compact_json_config() -> dict[str, Any]:
    """Compact JSON for structured outputs: a JSON grammar allows whitespace between tokens, and a
    model unsure of the next field fills max_tokens with it (the tiny test model answered
    '{\\r"lang":\\r"en"' and 18 spaces). vLLM 0.32 reads the switch from the engine's
    ``StructuredOutputsConfig`` (xgrammar backend) and ignores the request's; versions before it
    read the request's (``_structured`` sets both)."""
    try:
        from vllm.config import StructuredOutputsConfig

        return {"structured_outputs_config": StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True)}
    except (ImportError, TypeError, ValueError):
        return {}


def _delta_kind() -> Any:
    from vllm.sampling_params import RequestOutputKind

    return RequestOutputKind.DELTA
