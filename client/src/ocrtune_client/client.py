"""Typed HTTP client for the ocrtune inference and trainer services, sync and async.

Every request and response is a model from ``ocrtune_shared``; nothing is
re-declared here. Every failure a caller can act on (an error answer from a
service, a service that cannot be reached, an answer that is not what the
schema says) is raised as one exception, ``OCRTuneError``, which carries the
server's ``ErrorBody`` when there is one.

The request building and response parsing live in module functions that both
clients share, so the two differ only in how they wait for the network.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from ocrtune_shared.adapters import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, AdapterInfo, AdapterList
from ocrtune_shared.errors import ErrorBody, ErrorCode, ErrorResponse
from ocrtune_shared.finetune import FinetuneRequest
from ocrtune_shared.headers import ADAPTER_HEADER, API_KEY_HEADER
from ocrtune_shared.jobs import Job, JobEvent, JobEventType, JobList, JobState
from ocrtune_shared.names import AdapterRef
from ocrtune_shared.ocr import OCROptions, OCRResponse, OCRStreamEvent

DEFAULT_INFERENCE_URL = "http://127.0.0.1:8000"
DEFAULT_TRAINER_URL = "http://127.0.0.1:8001"
INFERENCE_URL_ENV = "OCRTUNE_INFERENCE_URL"
TRAINER_URL_ENV = "OCRTUNE_TRAINER_URL"
API_KEY_ENV = "OCRTUNE_API_KEY"

# OCR of a large PDF on a busy CPU can take minutes; connecting must not.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
# The event stream is idle between training steps (the base-model evaluation can
# take a while before step 1), so reads on it may wait long.
STREAM_TIMEOUT = httpx.Timeout(None, connect=10.0)
FOLLOW_RECONNECTS = 5

M = TypeVar("M", bound=BaseModel)

ImageSource = str | os.PathLike[str] | bytes


class OCRTuneError(Exception):
    """A request to an ocrtune service failed.

    ``body`` is the service's ``ErrorBody`` when it answered with one; for a
    service that could not be reached or answered outside the schema, ``body`` is
    built here so that callers can always print ``body.message``.
    """

    def __init__(self, body: ErrorBody, *, status: int | None = None, url: str | None = None) -> None:
        super().__init__(body.message)
        self.body = body
        self.status = status
        self.url = url

    @property
    def code(self) -> ErrorCode:
        return self.body.code

    @property
    def message(self) -> str:
        return self.body.message

    def __str__(self) -> str:
        where = f" ({self.body.where})" if self.body.where else ""
        status = f"HTTP {self.status}: " if self.status else ""
        return f"{status}{self.body.message}{where}"


def error_from_response(response: httpx.Response) -> OCRTuneError:
    """The ``OCRTuneError`` for a 4xx/5xx answer, keeping the server's words."""
    url = str(response.request.url)
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict) and "error" in payload:
        try:
            return OCRTuneError(ErrorResponse.model_validate(payload).error, status=response.status_code, url=url)
        except ValidationError:
            pass
    # A proxy, an auth layer or a framework default can answer outside our schema;
    # keep whatever it said rather than hide it behind a generic message.
    if isinstance(payload, dict) and "detail" in payload:
        text = payload["detail"] if isinstance(payload["detail"], str) else json.dumps(payload["detail"])
    else:
        text = response.text.strip()[:500] or response.reason_phrase
    code = {
        401: ErrorCode.unauthorized,
        403: ErrorCode.unauthorized,
        413: ErrorCode.payload_too_large,
        415: ErrorCode.unsupported_media_type,
        503: ErrorCode.not_ready,
    }.get(response.status_code, ErrorCode.invalid_request if response.status_code < 500 else ErrorCode.internal)
    return OCRTuneError(ErrorBody(code=code, message=text, where=url), status=response.status_code, url=url)


def error_from_transport(exc: httpx.TransportError, service: str, base_url: str) -> OCRTuneError:
    """The ``OCRTuneError`` for a service that could not be reached (down, wrong URL, timed out)."""
    if isinstance(exc, httpx.TimeoutException):
        message = f"the {service} service at {base_url} did not answer in time ({type(exc).__name__})"
    else:
        message = f"cannot reach the {service} service at {base_url}: {exc or type(exc).__name__}"
    return OCRTuneError(ErrorBody(code=ErrorCode.not_ready, message=message), url=base_url)


def parse_model(model: type[M], response: httpx.Response) -> M:
    if response.is_error:
        raise error_from_response(response)
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise OCRTuneError(
            ErrorBody(
                code=ErrorCode.internal,
                message=f"the service answered outside the schema ({model.__name__}): {exc.errors()[0]['msg']}",
                where=str(response.request.url),
            ),
            status=response.status_code,
        ) from exc


def _guess_media_type(name: str, data: bytes) -> str:
    if data[:5] == b"%PDF-" or name.lower().endswith(".pdf"):
        return "application/pdf"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] in (b"RIFF",) and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:2] == b"BM":
        return "image/bmp"
    return "application/octet-stream"


def read_image_source(source: ImageSource, filename: str | None = None) -> tuple[str, bytes, str]:
    """``(file name, bytes, media type)`` for an image or PDF given as a path or as bytes."""
    if isinstance(source, bytes):
        name = filename or "upload"
        data = source
    else:
        path = Path(source)
        data = path.read_bytes()
        name = filename or path.name
    return name, data, _guess_media_type(name, data)


def options_form(options: OCROptions) -> dict[str, str]:
    """The multipart form fields of ``POST /ocr`` for these options (the file travels beside them)."""
    fields = options.model_dump(mode="json", exclude_none=True)
    # The multipart answer is one JSON document; streaming has its own method.
    fields.pop("stream", None)
    return {key: str(value).lower() if isinstance(value, bool) else str(value) for key, value in fields.items()}


def adapter_archive(source: str | os.PathLike[str]) -> tuple[str, Any]:
    """``(file name, open file)`` of what ``POST /adapters`` takes: an archive as is, or a PEFT folder zipped.

    Only the two files vLLM serves travel (a notebook's folder also holds the tokenizer, README, ...).
    """
    path = Path(source)
    if path.is_dir():
        missing = [f for f in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE) if not (path / f).is_file()]
        if missing:
            raise ValueError(f"{path} is not a PEFT adapter folder: no {' or '.join(missing)}")
        spooled = tempfile.TemporaryFile()
        with zipfile.ZipFile(spooled, "w", zipfile.ZIP_STORED) as zf:  # safetensors hardly compress
            for name in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE):
                zf.write(path / name, name)
        spooled.seek(0)
        return f"{path.name or 'adapter'}.zip", spooled
    if not path.is_file():
        raise ValueError(f"no such adapter folder or archive: {path}")
    return path.name, open(path, "rb")  # closed by the caller


def adapter_form(name: str, base_model: str | None, model_family: str | None) -> dict[str, str]:
    AdapterRef(name=name)  # a bad name is refused before any upload, in the server's words
    form = {"name": name}
    if base_model:
        form["base_model"] = base_model
    if model_family:
        form["model_family"] = model_family
    return form


def adapter_headers(adapter: str | AdapterRef | None) -> dict[str, str]:
    if adapter is None:
        return {}
    # Parsing here turns a typo like 'name@x' into a clear error before any upload.
    ref = adapter if isinstance(adapter, AdapterRef) else AdapterRef.parse(adapter)
    return {ADAPTER_HEADER: str(ref)}


def jobs_params(state: JobState | str | None, cursor: str | None, limit: int | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if state is not None:
        params["state"] = JobState(state).value
    if cursor:
        params["cursor"] = cursor
    if limit is not None:
        params["limit"] = str(limit)
    return params


@dataclass
class SSEMessage:
    event: str
    data: str
    id: str | None


class SSEDecoder:
    """Incremental decoder of a ``text/event-stream`` (the WHATWG rules we need: fields, comments, blank line)."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> SSEMessage | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data:
                self._event = ""
                return None
            message = SSEMessage(event=self._event or "message", data="\n".join(self._data), id=self._id)
            self._event, self._data = "", []
            return message
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            self._id = value
        return None


def decode_job_event(message: SSEMessage) -> JobEvent | None:
    """A ``JobEvent`` from one SSE message, or None for messages that carry none (pings, comments)."""
    if not message.data.strip().startswith("{"):
        return None
    try:
        return JobEvent.model_validate_json(message.data)
    except ValidationError:
        return None


def decode_ocr_event(message: SSEMessage) -> OCRStreamEvent | OCRTuneError | None:
    if not message.data.strip().startswith("{"):
        return None
    payload = json.loads(message.data)
    if isinstance(payload, dict) and "error" in payload:
        return OCRTuneError(ErrorResponse.model_validate(payload).error)
    return OCRStreamEvent.model_validate(payload)


def ends_follow(event: JobEvent) -> bool:
    return event.type == JobEventType.state and event.state is not None and event.state.terminal


def _auth_headers(api_key: str | None) -> dict[str, str]:
    return {API_KEY_HEADER: f"Bearer {api_key}"} if api_key else {}


def _resolve(url: str | None, env: str, default: str) -> str:
    return (url or os.environ.get(env) or default).rstrip("/")


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
        self.inference_url = _resolve(inference_url, INFERENCE_URL_ENV, DEFAULT_INFERENCE_URL)
        self.trainer_url = _resolve(trainer_url, TRAINER_URL_ENV, DEFAULT_TRAINER_URL)
        headers = _auth_headers(api_key or os.environ.get(API_KEY_ENV))
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

    def _send(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        http = self._inference if service == "inference" else self._trainer
        try:
            return http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, service, str(http.base_url).rstrip("/")) from exc

    # --- inference -------------------------------------------------------------
    def ocr(
        self,
        source: ImageSource,
        *,
        adapter: str | AdapterRef | None = None,
        options: OCROptions | None = None,
        filename: str | None = None,
    ) -> OCRResponse:
        """OCR one image or PDF (path or bytes); ``adapter`` is ``name`` or ``name@version``, None for the base."""
        name, data, media_type = read_image_source(source, filename)
        response = self._send(
            "inference",
            "POST",
            "/ocr",
            files={"file": (name, data, media_type)},
            data=options_form(options or OCROptions()),
            headers=adapter_headers(adapter),
        )
        return parse_model(OCRResponse, response)

    def ocr_stream(
        self,
        source: ImageSource,
        *,
        adapter: str | AdapterRef | None = None,
        options: OCROptions | None = None,
        filename: str | None = None,
    ) -> Iterator[OCRStreamEvent]:
        """OCR with ``stream=true``: text deltas as they decode, then a final event with the response."""
        name, data, media_type = read_image_source(source, filename)
        form = options_form(options or OCROptions())
        form["stream"] = "true"
        request = self._inference.build_request(
            "POST", "/ocr", files={"file": (name, data, media_type)}, data=form, headers=adapter_headers(adapter)
        )
        yield from self._stream(request, "inference", decode_ocr_event)

    def adapters(self) -> AdapterList:
        return parse_model(AdapterList, self._send("inference", "GET", "/adapters"))

    def load_adapter(self, adapter: str | AdapterRef) -> dict[str, Any]:
        """Pre-warm an adapter into a device slot; returns the service's answer as JSON."""
        ref = adapter if isinstance(adapter, AdapterRef) else AdapterRef.parse(adapter)
        return _json_or_raise(self._send("inference", "POST", f"/adapters/{ref}/load"))

    def unload_adapter(self, name: str) -> dict[str, Any]:
        """Unload an adapter from the engine; the store keeps it."""
        return _json_or_raise(self._send("inference", "DELETE", f"/adapters/{AdapterRef.parse(name).name}"))

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
        form = adapter_form(name, base_model, model_family)
        filename, handle = adapter_archive(source)
        with handle:
            response = self._send(
                "inference",
                "POST",
                "/adapters",
                files={"file": (filename, handle, "application/octet-stream")},
                data=form,
            )
        return parse_model(AdapterInfo, response)

    # --- trainer ---------------------------------------------------------------
    def finetune(self, request: FinetuneRequest) -> Job:
        """Submit a fine-tune; the answer (202) is the job, usually still validating."""
        return parse_model(Job, self._send("trainer", "POST", "/finetune", json=request.model_dump(mode="json")))

    def job(self, job_id: str) -> Job:
        return parse_model(Job, self._send("trainer", "GET", f"/finetune/{job_id}"))

    def jobs(
        self, state: JobState | str | None = None, *, cursor: str | None = None, limit: int | None = None
    ) -> JobList:
        """One page of jobs, newest first; pass ``next_cursor`` back as ``cursor`` for the next."""
        return parse_model(JobList, self._send("trainer", "GET", "/finetune", params=jobs_params(state, cursor, limit)))

    def iter_jobs(self, state: JobState | str | None = None) -> Iterator[Job]:
        cursor: str | None = None
        while True:
            page = self.jobs(state, cursor=cursor)
            yield from page.jobs
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> Job:
        return parse_model(Job, self._send("trainer", "POST", f"/finetune/{job_id}/cancel"))

    def follow(self, job_id: str) -> Iterator[JobEvent]:
        """The job's events as they happen, until it reaches a terminal state.

        A dropped stream is resumed from the last event seen (``Last-Event-ID``); if
        the job already finished while we were away, its final state is yielded from
        ``GET /finetune/{id}`` so that a caller always sees the end.
        """
        last_seq = -1
        for attempt in range(FOLLOW_RECONNECTS + 1):
            headers = {"Last-Event-ID": str(last_seq)} if last_seq >= 0 else {}
            request = self._trainer.build_request(
                "GET", f"/finetune/{job_id}/events", headers=headers, timeout=STREAM_TIMEOUT
            )
            try:
                for event in self._stream(request, "trainer", decode_job_event):
                    if event.seq <= last_seq:
                        continue
                    last_seq = event.seq
                    yield event
                    if ends_follow(event):
                        return
            except OCRTuneError as exc:
                if exc.status is not None or attempt == FOLLOW_RECONNECTS:
                    raise
            job = self.job(job_id)
            if job.state.terminal:
                yield _final_event(job, last_seq)
                return
            time.sleep(min(2.0**attempt, 10.0))
        raise OCRTuneError(
            ErrorBody(code=ErrorCode.internal, message=f"the event stream of job {job_id} kept closing", where=job_id)
        )

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

    # --- health ----------------------------------------------------------------
    def ready(self, service: str) -> bool:
        """Whether ``service`` ('inference' or 'trainer') answers ``/readyz`` with 200."""
        try:
            return self._send(service, "GET", "/readyz", timeout=5.0).status_code == 200
        except OCRTuneError:
            return False

    def wait_ready(self, services: Iterable[str] = ("inference", "trainer"), *, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        pending = list(services)
        while pending:
            pending = [s for s in pending if not self.ready(s)]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f} s: {', '.join(pending)}")
            time.sleep(0.5)

    def _stream(self, request: httpx.Request, service: str, decode: Any) -> Iterator[Any]:
        http = self._inference if service == "inference" else self._trainer
        try:
            response = http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, service, str(http.base_url).rstrip("/")) from exc
        try:
            if response.is_error:
                response.read()
                raise error_from_response(response)
            decoder = SSEDecoder()
            for line in response.iter_lines():
                message = decoder.feed(line)
                if message is None:
                    continue
                item = decode(message)
                if isinstance(item, OCRTuneError):
                    raise item
                if item is not None:
                    yield item
        except httpx.TransportError as exc:
            raise error_from_transport(exc, service, str(http.base_url).rstrip("/")) from exc
        finally:
            response.close()


class AsyncOCRTuneClient:
    """The async twin of ``OCRTuneClient``: same methods, awaited; ``follow`` is an async iterator."""

    def __init__(
        self,
        inference_url: str | None = None,
        trainer_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.inference_url = _resolve(inference_url, INFERENCE_URL_ENV, DEFAULT_INFERENCE_URL)
        self.trainer_url = _resolve(trainer_url, TRAINER_URL_ENV, DEFAULT_TRAINER_URL)
        headers = _auth_headers(api_key or os.environ.get(API_KEY_ENV))
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

    async def _send(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        http = self._inference if service == "inference" else self._trainer
        try:
            return await http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, service, str(http.base_url).rstrip("/")) from exc

    async def ocr(
        self,
        source: ImageSource,
        *,
        adapter: str | AdapterRef | None = None,
        options: OCROptions | None = None,
        filename: str | None = None,
    ) -> OCRResponse:
        name, data, media_type = read_image_source(source, filename)
        response = await self._send(
            "inference",
            "POST",
            "/ocr",
            files={"file": (name, data, media_type)},
            data=options_form(options or OCROptions()),
            headers=adapter_headers(adapter),
        )
        return parse_model(OCRResponse, response)

    async def adapters(self) -> AdapterList:
        return parse_model(AdapterList, await self._send("inference", "GET", "/adapters"))

    async def load_adapter(self, adapter: str | AdapterRef) -> dict[str, Any]:
        ref = adapter if isinstance(adapter, AdapterRef) else AdapterRef.parse(adapter)
        return _json_or_raise(await self._send("inference", "POST", f"/adapters/{ref}/load"))

    async def unload_adapter(self, name: str) -> dict[str, Any]:
        return _json_or_raise(await self._send("inference", "DELETE", f"/adapters/{AdapterRef.parse(name).name}"))

    async def finetune(self, request: FinetuneRequest) -> Job:
        response = await self._send("trainer", "POST", "/finetune", json=request.model_dump(mode="json"))
        return parse_model(Job, response)

    async def job(self, job_id: str) -> Job:
        return parse_model(Job, await self._send("trainer", "GET", f"/finetune/{job_id}"))

    async def jobs(
        self, state: JobState | str | None = None, *, cursor: str | None = None, limit: int | None = None
    ) -> JobList:
        response = await self._send("trainer", "GET", "/finetune", params=jobs_params(state, cursor, limit))
        return parse_model(JobList, response)

    async def cancel(self, job_id: str) -> Job:
        return parse_model(Job, await self._send("trainer", "POST", f"/finetune/{job_id}/cancel"))

    async def follow(self, job_id: str) -> AsyncIterator[JobEvent]:
        import asyncio

        last_seq = -1
        for attempt in range(FOLLOW_RECONNECTS + 1):
            headers = {"Last-Event-ID": str(last_seq)} if last_seq >= 0 else {}
            request = self._trainer.build_request(
                "GET", f"/finetune/{job_id}/events", headers=headers, timeout=STREAM_TIMEOUT
            )
            try:
                async for event in self._stream_job_events(request):
                    if event.seq <= last_seq:
                        continue
                    last_seq = event.seq
                    yield event
                    if ends_follow(event):
                        return
            except OCRTuneError as exc:
                if exc.status is not None or attempt == FOLLOW_RECONNECTS:
                    raise
            job = await self.job(job_id)
            if job.state.terminal:
                yield _final_event(job, last_seq)
                return
            await asyncio.sleep(min(2.0**attempt, 10.0))
        raise OCRTuneError(
            ErrorBody(code=ErrorCode.internal, message=f"the event stream of job {job_id} kept closing", where=job_id)
        )

    async def ready(self, service: str) -> bool:
        try:
            return (await self._send(service, "GET", "/readyz", timeout=5.0)).status_code == 200
        except OCRTuneError:
            return False

    async def _stream_job_events(self, request: httpx.Request) -> AsyncIterator[JobEvent]:
        base = self.trainer_url
        try:
            response = await self._trainer.send(request, stream=True)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, "trainer", base) from exc
        try:
            if response.is_error:
                await response.aread()
                raise error_from_response(response)
            decoder = SSEDecoder()
            async for line in response.aiter_lines():
                message = decoder.feed(line)
                event = decode_job_event(message) if message is not None else None
                if event is not None:
                    yield event
        except httpx.TransportError as exc:
            raise error_from_transport(exc, "trainer", base) from exc
        finally:
            await response.aclose()


def _final_event(job: Job, last_seq: int) -> JobEvent:
    return JobEvent(
        seq=last_seq + 1,
        job_id=job.id,
        type=JobEventType.state,
        time=job.finished_at or job.updated_at,
        state=job.state,
        progress=job.progress,
        message=job.error.message if job.error else "",
    )


def _json_or_raise(response: httpx.Response) -> dict[str, Any]:
    if response.is_error:
        raise error_from_response(response)
    if not response.content:
        return {}
    payload = response.json()
    return payload if isinstance(payload, dict) else {"result": payload}
