"""Typed HTTP client for the ocrtune inference and trainer services (sync; the async twin is
``ocrtune_client.async_client``).

Every request and response is a model from ``ocrtune_shared``; nothing is
re-declared here. What each method sends and how its answer is read is described
once, in ``ocrtune_client.operations``; this class only sends those descriptions
over ``httpx.Client``. Every failure a caller can act on is raised as ``OCRTuneError``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
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


class OCRTuneClient:
    """Sync client of both services.

    >>> with OCRTuneClient() as client:
    ...     job = client.finetune(FinetuneRequest(adapter_name="invoices", train={"uri": "data/train.parquet"}))
    ...     for event in client.follow(job.id):
    ...         print(event.progress)
    ...     print(client.ocr("page.png", adapter="invoices").text)

    URLs default to ``$OCRTUNE_INFERENCE_URL`` / ``$OCRTUNE_TRAINER_URL``, then to
    the services' default ports on 127.0.0.1; the API key to ``$OCRTUNE_API_KEY``.
    """

    def __init__(
        self,
        inference_url: str | None = None,
        trainer_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.inference_url = op.service_url(inference_url, op.INFERENCE_URL_ENV, op.DEFAULT_INFERENCE_URL)
        self.trainer_url = op.service_url(trainer_url, op.TRAINER_URL_ENV, op.DEFAULT_TRAINER_URL)
        headers = op.auth_headers(api_key)
        self._inference = httpx.Client(
            base_url=self.inference_url, headers=headers, timeout=timeout, transport=transport
        )
        self._trainer = httpx.Client(base_url=self.trainer_url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> OCRTuneClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._inference.close()
        self._trainer.close()

    # --- the transport ---------------------------------------------------------------------
    def _http(self, service: Service) -> httpx.Client:
        return self._inference if service == "inference" else self._trainer

    def _call(self, operation: Operation[T]) -> T:
        http = self._http(operation.service)
        try:
            response = http.send(operation.build(http))
        except httpx.TransportError as exc:
            raise error_from_transport(exc, operation.service, str(http.base_url).rstrip("/")) from exc
        finally:
            operation.release()
        return operation.parse(response)

    def _stream(self, stream: EventStream[E]) -> Iterator[E]:
        http = self._http(stream.service)
        base_url = str(http.base_url).rstrip("/")
        try:
            response = http.send(stream.build(http), stream=True)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, stream.service, base_url) from exc
        try:
            if response.is_error:
                response.read()
                raise error_from_response(response)
            reader = stream.reader()
            for line in response.iter_lines():
                item = reader.feed(line)
                if item is not None:
                    yield item
        except httpx.TransportError as exc:
            raise error_from_transport(exc, stream.service, base_url) from exc
        finally:
            response.close()

    # --- inference -------------------------------------------------------------------------
    def ocr(
        self,
        source: ImageSource,
        *,
        adapter: str | AdapterRef | None = None,
        options: OCROptions | None = None,
        filename: str | None = None,
    ) -> OCRResponse:
        """OCR one image or PDF (path or bytes); ``adapter`` is ``name`` or ``name@version``, None for the base."""
        return self._call(op.ocr(source, adapter=adapter, options=options, filename=filename))

    def ocr_stream(
        self,
        source: ImageSource,
        *,
        adapter: str | AdapterRef | None = None,
        options: OCROptions | None = None,
        filename: str | None = None,
    ) -> Iterator[OCRStreamEvent]:
        """OCR with ``stream=true``: text deltas as they decode, then a final event with the response."""
        yield from self._stream(op.ocr_stream(source, adapter=adapter, options=options, filename=filename))

    def adapters(self) -> AdapterList:
        return self._call(op.adapters())

    def load_adapter(self, adapter: str | AdapterRef) -> AdapterLoadResponse:
        """Pre-warm an adapter into a device slot; the answer names the version loaded."""
        return self._call(op.load_adapter(adapter))

    def unload_adapter(self, name: str) -> AdapterUnloadResponse:
        """Unload every version of an adapter from the engine; the store keeps them."""
        return self._call(op.unload_adapter(name))

    def upload_adapter(
        self,
        source: str | os.PathLike[str],
        *,
        name: str,
        base_model: str | None = None,
        model_family: str | None = None,
    ) -> AdapterInfo:
        """Publish a PEFT adapter (a folder, or a zip/tar of one) as a new version of ``name``; the service
        converts and checks it first. ``base_model``/``model_family`` default to what the service serves."""
        return self._call(op.upload_adapter(source, name=name, base_model=base_model, model_family=model_family))

    # --- trainer ---------------------------------------------------------------------------
    def finetune(self, request: FinetuneRequest) -> Job:
        """Submit a fine-tune; the answer (202) is the job, usually still validating."""
        return self._call(op.finetune(request))

    def job(self, job_id: str) -> Job:
        return self._call(op.job(job_id))

    def checkpoints(self, job_id: str) -> CheckpointList:
        """The checkpoints the job wrote while training (``kept``: still on disk), and its resumes."""
        return self._call(op.checkpoints(job_id))

    def event_page(
        self, job_id: str, *, after: int = 0, limit: int = 100, event_type: JobEventType | str | None = None
    ) -> JobEventList:
        """One page of the job's events, oldest first; pass ``next_after`` back as ``after`` for the next."""
        return self._call(op.event_page(job_id, after=after, limit=limit, event_type=event_type))

    def jobs(
        self, state: JobState | str | None = None, *, cursor: str | None = None, limit: int | None = None
    ) -> JobList:
        """One page of jobs, newest first; pass ``next_cursor`` back as ``cursor`` for the next."""
        return self._call(op.jobs(state, cursor=cursor, limit=limit))

    def iter_jobs(self, state: JobState | str | None = None) -> Iterator[Job]:
        """Every job, newest first, page after page."""
        cursor: str | None = None
        while True:
            page = self.jobs(state, cursor=cursor)
            yield from page.jobs
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> Job:
        return self._call(op.cancel(job_id))

    def follow(self, job_id: str) -> Iterator[JobEvent]:
        """The job's events as they happen, until it reaches a terminal state (resumed if the stream drops)."""
        follower = JobFollower(job_id)
        for attempt in follower.attempts():
            try:
                for event in self._stream(follower.events()):
                    if follower.is_new(event):
                        yield event
                        if ends_follow(event):
                            return
            except OCRTuneError as exc:
                if not follower.may_reconnect(exc, attempt):
                    raise
            final = follower.final_event(self.job(job_id))
            if final is not None:
                yield final
                return
            time.sleep(follower.backoff_s(attempt))
        raise follower.gave_up()

    def wait(self, job_id: str, *, timeout: float | None = None, poll_s: float = 1.0) -> Job:
        """Poll until the job is terminal (for callers that need no events)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.state.terminal:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.state.value} after {timeout} s")
            time.sleep(poll_s)

    # --- health ----------------------------------------------------------------------------
    def ready(self, service: Service) -> bool:
        """Whether ``service`` ('inference' or 'trainer') answers ``/readyz`` with 200."""
        try:
            return self._call(op.ready(service))
        except OCRTuneError:
            return False

    def wait_ready(self, services: Iterable[Service] = ("inference", "trainer"), *, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        pending = list(services)
        while pending:
            pending = [s for s in pending if not self.ready(s)]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f} s: {', '.join(pending)}")
            time.sleep(0.5)
