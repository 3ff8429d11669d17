"""OCR of page images with an optional adapter: the logic behind ``POST /ocr`` and chat completions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from PIL import Image
from vllm.v1.engine.exceptions import EngineDeadError

from ocrtune_inference.catalog import AdapterCatalog, ServedAdapter
from ocrtune_inference.engine import REQUEST_ERRORS, Generation, OCREngine
from ocrtune_inference.families import EnginePrompt, ServingFamily
from ocrtune_inference.metrics import BASE_LABEL, ServiceMetrics
from ocrtune_shared.errors import ErrorCode, ServiceError
from ocrtune_shared.ocr import OCROptions, OCRResponse, OCRStreamEvent, PageResult, TokenLogprob, Usage

PAGE_SEPARATOR = "\f"


class OCRService:
    def __init__(
        self, engine: OCREngine, catalog: AdapterCatalog, family: ServingFamily, metrics: ServiceMetrics, model_name: str
    ) -> None:
        self.engine = engine
        self.catalog = catalog
        self.family = family
        self.metrics = metrics
        self.model_name = model_name

    async def adapter_for(self, reference: str | None) -> ServedAdapter | None:
        """The adapter a request names (header or ``model=``); None for the base model."""
        if reference is None or not reference.strip() or reference.strip() == self.model_name:
            return None
        adapter = await self.catalog.resolve(reference)
        self.catalog.mark_used(adapter)
        return adapter

    async def _generate(self, prompt: EnginePrompt, options: OCROptions, adapter: ServedAdapter | None) -> AsyncIterator[Generation]:
        self.metrics.in_flight.set(self.engine.in_flight + 1)
        try:
            async for generation in self.engine.generate(
                prompt, max_tokens=options.max_tokens, lora=adapter.lora if adapter else None,
                top_logprobs=options.logprobs, json_schema=options.json_schema,
            ):
                yield generation
        except ServiceError:
            raise
        except EngineDeadError:
            raise ServiceError(503, ErrorCode.not_ready, "the engine has stopped; the service needs a restart") from None
        except REQUEST_ERRORS as exc:  # vLLM's input validation (prompt too long, bad image, uncompilable schema)
            raise ServiceError(422, ErrorCode.invalid_request, f"the engine refused the request: {exc}") from None
        finally:
            self.metrics.in_flight.set(self.engine.in_flight)

    async def _page(self, number: int, prompt: EnginePrompt, options: OCROptions, adapter: ServedAdapter | None) -> PageResult:
        last: Generation | None = None
        logprobs: list[TokenLogprob] = []
        async for generation in self._generate(prompt, options, adapter):
            last = generation
            logprobs += generation.logprobs or []
        assert last is not None, "the engine finished without output"
        return _page_result(number, last, logprobs if options.logprobs is not None else None)

    def _response(self, pages: list[PageResult], adapter: ServedAdapter | None, started: float) -> OCRResponse:
        label = adapter.ref if adapter else BASE_LABEL
        usage = Usage(
            prompt_tokens=sum(p.usage.prompt_tokens for p in pages),
            completion_tokens=sum(p.usage.completion_tokens for p in pages),
        )
        elapsed = time.perf_counter() - started
        self.metrics.requests.labels(adapter=label, status="ok").inc()
        self.metrics.latency.labels(adapter=label).observe(elapsed)
        self.metrics.tokens.labels(adapter=label, kind="prompt").inc(usage.prompt_tokens)
        self.metrics.tokens.labels(adapter=label, kind="completion").inc(usage.completion_tokens)
        self.metrics.pages.labels(adapter=label).inc(len(pages))
        return OCRResponse(
            text=PAGE_SEPARATOR.join(p.text for p in pages),
            pages=pages,
            model=self.model_name,
            adapter=adapter.ref if adapter else None,
            usage=usage,
            latency_ms=round(elapsed * 1000, 3),
        )

    def failed(self, adapter: ServedAdapter | None) -> None:
        self.metrics.requests.labels(adapter=adapter.ref if adapter else BASE_LABEL, status="error").inc()

    async def recognize(
        self, pages: list[Image.Image], options: OCROptions, adapter: ServedAdapter | None, *, instruction: str | None = None
    ) -> OCRResponse:
        """All pages at once: the engine batches them with everyone else's requests."""
        started = time.perf_counter()
        prompts = [self._prompt(page, options, instruction) for page in pages]
        try:
            results = await asyncio.gather(
                *(self._page(i + 1, prompt, options, adapter) for i, prompt in enumerate(prompts))
            )
        except Exception:
            self.failed(adapter)
            raise
        return self._response(list(results), adapter, started)

    async def stream(
        self, pages: list[Image.Image], options: OCROptions, adapter: ServedAdapter | None,
        *, instruction: str | None = None,
    ) -> AsyncIterator[OCRStreamEvent]:
        """Text deltas page by page, then one ``done`` event carrying the whole response."""
        started = time.perf_counter()
        results: list[PageResult] = []
        try:
            for number, page in enumerate(pages, start=1):
                last: Generation | None = None
                logprobs: list[TokenLogprob] = []
                async for last in self._generate(self._prompt(page, options, instruction), options, adapter):
                    logprobs += last.logprobs or []
                    if last.delta or last.logprobs:
                        yield OCRStreamEvent(page=number, delta=last.delta, logprobs=last.logprobs)
                assert last is not None, "the engine finished without output"
                results.append(_page_result(number, last, logprobs if options.logprobs is not None else None))
        except Exception:
            self.failed(adapter)
            raise
        yield OCRStreamEvent(page=len(results), done=True, response=self._response(results, adapter, started))

    def _prompt(self, page: Image.Image, options: OCROptions, instruction: str | None) -> EnginePrompt:
        try:
            if instruction:
                options = options.model_copy(update={"prompt": instruction})
            return self.family.prompt(page, options)
        except ValueError as exc:  # an option the served family lacks (e.g. a DeepSeek-OCR-2 resolution mode)
            raise ServiceError(422, ErrorCode.invalid_request, str(exc)) from None


def _page_result(number: int, last: Generation, logprobs: list[TokenLogprob] | None) -> PageResult:
    return PageResult(
        page=number,
        text=last.text,
        usage=Usage(prompt_tokens=last.prompt_tokens, completion_tokens=last.completion_tokens),
        finish_reason=last.finish_reason,
        logprobs=logprobs,
    )
