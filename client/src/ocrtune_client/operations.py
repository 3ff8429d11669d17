"""Every request the client makes, described once and without I/O.

Each function here returns what one client method sends (service, method, path,
params, form, files, headers) and how its answer is read back: an ``Operation``
parses one response into an ``ocrtune_shared`` model or raises ``OCRTuneError``; an
``EventStream`` decodes a ``text/event-stream`` into models. ``OCRTuneClient`` and
``AsyncOCRTuneClient`` only send these, so the two cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, BinaryIO, Generic, Literal, TypeVar

import httpx

from ocrtune_client.errors import M, OCRTuneError, parse_model
from ocrtune_client.events import EventReader, SSEMessage, decode_job_event, decode_ocr_event, final_event
from ocrtune_client.uploads import ImageSource, adapter_archive, read_image_source
from ocrtune_shared.adapters import AdapterInfo, AdapterList, AdapterLoadResponse, AdapterUnloadResponse
from ocrtune_shared.errors import ErrorBody, ErrorCode
from ocrtune_shared.finetune import FinetuneRequest
from ocrtune_shared.headers import ADAPTER_HEADER, API_KEY_HEADER
from ocrtune_shared.jobs import CheckpointList, Job, JobEvent, JobEventList, JobEventType, JobList, JobState
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
READY_TIMEOUT = httpx.Timeout(5.0)
FOLLOW_RECONNECTS = 5

Service = Literal["inference", "trainer"]
T = TypeVar("T")
E = TypeVar("E")
FileField = tuple[str, bytes | BinaryIO, str]


@dataclass(frozen=True, kw_only=True)
class Call:
    """One HTTP request to one of the two services, not sent."""

    service: Service
    method: str
    path: str
    params: dict[str, str] | None = None
    json: Any = None
    form: dict[str, str] | None = None
    files: dict[str, FileField] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # None: the client's own timeout. (httpx reads None as "no timeout at all".)
    timeout: httpx.Timeout | None = None

    def build(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        return http.build_request(
            self.method,
            self.path,
            params=self.params,
            json=self.json,
            data=self.form,
            files=self.files,
            headers=self.headers,
            timeout=httpx.USE_CLIENT_DEFAULT if self.timeout is None else self.timeout,
        )

    def release(self) -> None:
        """Close the files this request opened (an adapter archive) once it has been sent."""
        for _, content, _ in (self.files or {}).values():
            if not isinstance(content, bytes):
                content.close()


@dataclass(frozen=True, kw_only=True)
class Operation(Call, Generic[T]):
    """A request answered by one response, read by ``parse``."""

    parse: Callable[[httpx.Response], T]


@dataclass(frozen=True, kw_only=True)
class EventStream(Call, Generic[E]):
    """A request answered by a ``text/event-stream``, each message read by ``decode``."""

    decode: Callable[[SSEMessage], E | OCRTuneError | None]

    def reader(self) -> EventReader[E]:
        return EventReader(self.decode)


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    return partial(parse_model, model)


# --- where the services are ------------------------------------------------------------
def service_url(url: str | None, env: str, default: str) -> str:
    return (url or os.environ.get(env) or default).rstrip("/")


def auth_headers(api_key: str | None) -> dict[str, str]:
    key = api_key or os.environ.get(API_KEY_ENV)
    return {API_KEY_HEADER: f"Bearer {key}"} if key else {}


# --- form fields, headers and query parameters ----------------------------------------------
def options_form(options: OCROptions) -> dict[str, str]:
    """The multipart form fields of ``POST /ocr`` for these options (the file travels beside them)."""
    fields = options.model_dump(mode="json", exclude_none=True)
    # The multipart answer is one JSON document; streaming has its own method.
    fields.pop("stream", None)
    return {key: str(value).lower() if isinstance(value, bool) else str(value) for key, value in fields.items()}


def adapter_headers(adapter: str | AdapterRef | None) -> dict[str, str]:
    if adapter is None:
        return {}
    # Parsing here turns a typo like 'name@x' into a clear error before any upload.
    ref = adapter if isinstance(adapter, AdapterRef) else AdapterRef.parse(adapter)
    return {ADAPTER_HEADER: str(ref)}


def adapter_form(name: str, base_model: str | None, model_family: str | None) -> dict[str, str]:
    AdapterRef(name=name)  # a bad name is refused before any upload, in the server's words
    form = {"name": name}
    if base_model:
        form["base_model"] = base_model
    if model_family:
        form["model_family"] = model_family
    return form


def jobs_params(state: JobState | str | None, cursor: str | None, limit: int | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if state is not None:
        params["state"] = JobState(state).value
    if cursor:
        params["cursor"] = cursor
    if limit is not None:
        params["limit"] = str(limit)
    return params


# --- inference -------------------------------------------------------------------------------
def ocr(
    source: ImageSource,
    *,
    adapter: str | AdapterRef | None = None,
    options: OCROptions | None = None,
    filename: str | None = None,
) -> Operation[OCRResponse]:
    name, data, media_type = read_image_source(source, filename)
    return Operation(
        service="inference",
        method="POST",
        path="/ocr",
        files={"file": (name, data, media_type)},
        form=options_form(options or OCROptions()),
        headers=adapter_headers(adapter),
        parse=_model(OCRResponse),
    )


def ocr_stream(
    source: ImageSource,
    *,
    adapter: str | AdapterRef | None = None,
    options: OCROptions | None = None,
    filename: str | None = None,
) -> EventStream[OCRStreamEvent]:
    name, data, media_type = read_image_source(source, filename)
    return EventStream(
        service="inference",
        method="POST",
        path="/ocr",
        files={"file": (name, data, media_type)},
        form={**options_form(options or OCROptions()), "stream": "true"},
        headers=adapter_headers(adapter),
        decode=decode_ocr_event,
    )


def adapters() -> Operation[AdapterList]:
    return Operation(service="inference", method="GET", path="/adapters", parse=_model(AdapterList))


def load_adapter(adapter: str | AdapterRef) -> Operation[AdapterLoadResponse]:
    ref = adapter if isinstance(adapter, AdapterRef) else AdapterRef.parse(adapter)
    return Operation(
        service="inference", method="POST", path=f"/adapters/{ref}/load", parse=_model(AdapterLoadResponse)
    )


def unload_adapter(name: str) -> Operation[AdapterUnloadResponse]:
    # The route unloads every version of a name; a version given here is dropped, not sent.
    return Operation(
        service="inference",
        method="DELETE",
        path=f"/adapters/{AdapterRef.parse(name).name}",
        parse=_model(AdapterUnloadResponse),
    )


def upload_adapter(
    source: str | os.PathLike[str],
    *,
    name: str,
    base_model: str | None = None,
    model_family: str | None = None,
) -> Operation[AdapterInfo]:
    """Opens the archive (or zips the folder): the sender calls ``release`` once it is sent."""
    form = adapter_form(name, base_model, model_family)
    filename, handle = adapter_archive(source)
    return Operation(
        service="inference",
        method="POST",
        path="/adapters",
        files={"file": (filename, handle, "application/octet-stream")},
        form=form,
        parse=_model(AdapterInfo),
    )


# --- trainer -----------------------------------------------------------------------------------
def finetune(request: FinetuneRequest) -> Operation[Job]:
    return Operation(
        service="trainer", method="POST", path="/finetune", json=request.model_dump(mode="json"), parse=_model(Job)
    )


def job(job_id: str) -> Operation[Job]:
    return Operation(service="trainer", method="GET", path=f"/finetune/{job_id}", parse=_model(Job))


def jobs(
    state: JobState | str | None = None, *, cursor: str | None = None, limit: int | None = None
) -> Operation[JobList]:
    return Operation(
        service="trainer",
        method="GET",
        path="/finetune",
        params=jobs_params(state, cursor, limit),
        parse=_model(JobList),
    )


def checkpoints(job_id: str) -> Operation[CheckpointList]:
    return Operation(service="trainer", method="GET", path=f"/finetune/{job_id}/checkpoints",
                     parse=_model(CheckpointList))


def event_page(
    job_id: str, *, after: int = 0, limit: int = 100, event_type: JobEventType | str | None = None
) -> Operation[JobEventList]:
    params = {"after": str(after), "limit": str(limit)}
    if event_type is not None:
        params["type"] = JobEventType(event_type).value
    return Operation(service="trainer", method="GET", path=f"/finetune/{job_id}/events/list", params=params,
                     parse=_model(JobEventList))


def cancel(job_id: str) -> Operation[Job]:
    return Operation(service="trainer", method="POST", path=f"/finetune/{job_id}/cancel", parse=_model(Job))


def job_events(job_id: str, *, after_seq: int = -1) -> EventStream[JobEvent]:
    """The job's events; ``after_seq`` resumes a dropped stream after the last event seen."""
    return EventStream(
        service="trainer",
        method="GET",
        path=f"/finetune/{job_id}/events",
        headers={"Last-Event-ID": str(after_seq)} if after_seq >= 0 else {},
        timeout=STREAM_TIMEOUT,
        decode=decode_job_event,
    )


def ready(service: Service) -> Operation[bool]:
    return Operation(
        service=service,
        method="GET",
        path="/readyz",
        timeout=READY_TIMEOUT,
        parse=lambda response: response.status_code == 200,
    )


class JobFollower:
    """The rules of ``follow``, without I/O: which stream to open, which events are new, when to stop.

    A dropped stream is resumed from the last event seen (``Last-Event-ID``); if the job
    finished while the stream was down, its final state is built from ``GET /finetune/{id}``
    so that a caller always sees the end.
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.last_seq = -1

    def attempts(self) -> range:
        return range(FOLLOW_RECONNECTS + 1)

    def events(self) -> EventStream[JobEvent]:
        return job_events(self.job_id, after_seq=self.last_seq)

    def is_new(self, event: JobEvent) -> bool:
        """False for an event a resumed stream replays; records the new ones."""
        if event.seq <= self.last_seq:
            return False
        self.last_seq = event.seq
        return True

    def may_reconnect(self, error: OCRTuneError, attempt: int) -> bool:
        # An answer with a status (404, 401...) will not change by asking again; a dropped connection may.
        return error.status is None and attempt < FOLLOW_RECONNECTS

    def final_event(self, job: Job) -> JobEvent | None:
        return final_event(job, self.last_seq) if job.state.terminal else None

    @staticmethod
    def backoff_s(attempt: int) -> float:
        return min(2.0**attempt, 10.0)

    def gave_up(self) -> OCRTuneError:
        return OCRTuneError(
            ErrorBody(
                code=ErrorCode.internal,
                message=f"the event stream of job {self.job_id} kept closing",
                where=self.job_id,
            )
        )
