"""The async twin of ``OCRTuneClient``: the same methods with the same arguments, awaited; the
streaming ones (``ocr_stream``, ``follow``, ``iter_jobs``) are async iterators.

It sends the same ``ocrtune_client.operations`` descriptions over ``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from typing import TypeVar

import httpx

from ocrtune_client import operations as op
from ocrtune_client.errors import OCRTuneError, error_from_response, error_from_transport
from ocrtune_client.events import ends_follow
from ocrtune_client.operations import DEFAULT_TIMEOUT, EventStream, JobFollower, Operation, Service
from ocrtune_client.uploads import ImageSource
from ocrtune_shared.adapters import AdapterInfo, AdapterList, AdapterLoadResponse, AdapterUnloadResponse
from ocrtune_shared.finetune import FinetuneRequest
from ocrtune_shared.jobs import CheckpointList, Job, JobEvent, JobEventList, JobEventType, JobList, JobState
from ocrtune_shared.names import AdapterRef
from ocrtune_shared.ocr import OCROptions, OCRResponse, OCRStreamEvent

T = TypeVar("T")
E = TypeVar("E")


class AsyncOCRTuneClient:
    """Async client of both services; see ``OCRTuneClient`` for what each method does.

    >>> async with AsyncOCRTuneClient() as client:
    ...     async for event in client.follow(job_id):
    ...         print(event.progress)
    """

    def __init__(
        self,
        inference_url: str | None = None,
        trainer_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.inference_url = op.service_url(inference_url, op.INFERENCE_URL_ENV, op.DEFAULT_INFERENCE_URL)
        self.trainer_url = op.service_url(trainer_url, op.TRAINER_URL_ENV, op.DEFAULT_TRAINER_URL)
        headers = op.auth_headers(api_key)
        self._inference = httpx.AsyncClient(
            base_url=self.inference_url, headers=headers, timeout=timeout, transport=transport
        )
        self._trainer = httpx.AsyncClient(
            base_url=self.trainer_url, headers=headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncOCRTuneClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._inference.aclose()
        await self._trainer.aclose()

    # --- the transport ---------------------------------------------------------------------
    def _http(self, service: Service) -> httpx.AsyncClient:
        return self._inference if service == "inference" else self._trainer

    async def _call(self, operation: Operation[T]) -> T:
        http = self._http(operation.service)
        try:
            response = await http.send(operation.build(http))
        except httpx.TransportError as exc:
            raise error_from_transport(exc, operation.service, str(http.base_url).rstrip("/")) from exc
        finally:
            operation.release()
        return operation.parse(response)

    async def _stream(self, stream: EventStream[E]) -> AsyncIterator[E]:
        http = self._http(stream.service)
        base_url = str(http.base_url).rstrip("/")
        try:
            response = await http.send(stream.build(http), stream=True)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, stream.service, base_url) from exc
        try:
            if response.is_error:
                await response.aread()
                raise error_from_response(response)
            reader = stream.reader()
            async for line in response.aiter_lines():
                item = reader.feed(line)
                if item is not None:
                    yield item
        except httpx.TransportError as exc:
            raise error_from_transport(exc, stream.service, base_url) from exc
        finally:
            await response.aclose()

    # --- inference -------------------------------------------------------------------------
    async def ocr(
        self,
        source: ImageSource,
        *,
        adapter: str | AdapterRef | None = None,
        options: OCROptions | None = None,
        filename: str | None = None,
    ) -> OCRResponse:
        return await self._call(op.ocr(source, adapter=adapter, options=options, filename=filename))

    async def ocr_stream(
        self,
        source: ImageSource,
        *,
        adapter: str | AdapterRef | None = None,
        options: OCROptions | None = None,
        filename: str | None = None,
    ) -> AsyncIterator[OCRStreamEvent]:
        stream = op.ocr_stream(source, adapter=adapter, options=options, filename=filename)
        async with aclosing(self._stream(stream)) as events:
            async for event in events:
                yield event

    async def adapters(self) -> AdapterList:
        return await self._call(op.adapters())

    async def load_adapter(self, adapter: str | AdapterRef) -> AdapterLoadResponse:
        return await self._call(op.load_adapter(adapter))

    async def unload_adapter(self, name: str) -> AdapterUnloadResponse:
        return await self._call(op.unload_adapter(name))

    async def upload_adapter(
        self,
        source: str | os.PathLike[str],
        *,
        name: str,
        base_model: str | None = None,
        model_family: str | None = None,
    ) -> AdapterInfo:
        return await self._call(
            op.upload_adapter(source, name=name, base_model=base_model, model_family=model_family)
        )

    # --- trainer ---------------------------------------------------------------------------
    async def finetune(self, request: FinetuneRequest) -> Job:
        return await self._call(op.finetune(request))

    async def job(self, job_id: str) -> Job:
        return await self._call(op.job(job_id))

    async def checkpoints(self, job_id: str) -> CheckpointList:
        """The checkpoints the job wrote while training (``kept``: still on disk), and its resumes."""
        return await self._call(op.checkpoints(job_id))

    async def event_page(
        self, job_id: str, *, after: int = 0, limit: int = 100, event_type: JobEventType | str | None = None
    ) -> JobEventList:
        """One page of the job's events, oldest first; pass ``next_after`` back as ``after`` for the next."""
        return await self._call(op.event_page(job_id, after=after, limit=limit, event_type=event_type))

    async def jobs(
        self, state: JobState | str | None = None, *, cursor: str | None = None, limit: int | None = None
    ) -> JobList:
        return await self._call(op.jobs(state, cursor=cursor, limit=limit))

    async def iter_jobs(self, state: JobState | str | None = None) -> AsyncIterator[Job]:
        cursor: str | None = None
        while True:
            page = await self.jobs(state, cursor=cursor)
            for job in page.jobs:
                yield job
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def cancel(self, job_id: str) -> Job:
        return await self._call(op.cancel(job_id))

    async def follow(self, job_id: str) -> AsyncIterator[JobEvent]:
        follower = JobFollower(job_id)
        for attempt in follower.attempts():
            try:
                # Closed at once on return, not whenever the event loop collects it: the response is a connection.
                async with aclosing(self._stream(follower.events())) as events:
                    async for event in events:
                        if follower.is_new(event):
                            yield event
                            if ends_follow(event):
                                return
            except OCRTuneError as exc:
                if not follower.may_reconnect(exc, attempt):
                    raise
            final = follower.final_event(await self.job(job_id))
            if final is not None:
                yield final
                return
            await asyncio.sleep(follower.backoff_s(attempt))
        raise follower.gave_up()

    async def wait(self, job_id: str, *, timeout: float | None = None, poll_s: float = 1.0) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job.state.terminal:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.state.value} after {timeout} s")
            await asyncio.sleep(poll_s)

    # --- health ----------------------------------------------------------------------------
    async def ready(self, service: Service) -> bool:
        try:
            return await self._call(op.ready(service))
        except OCRTuneError:
            return False

    async def wait_ready(
        self, services: Iterable[Service] = ("inference", "trainer"), *, timeout: float = 300.0
    ) -> None:
        deadline = time.monotonic() + timeout
        pending = list(services)
        while pending:
            pending = [s for s in pending if not await self.ready(s)]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f} s: {', '.join(pending)}")
            await asyncio.sleep(0.5)
