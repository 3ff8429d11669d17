"""The services' event streams (``text/event-stream``), decoded without I/O.

Both streams the services send, a job's events and a streamed OCR, go through one
``SSEDecoder``; ``EventReader`` turns its messages into the stream's models, so the
sync and the async client only feed it lines.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import ValidationError

from ocrtune_client.errors import OCRTuneError
from ocrtune_shared.errors import ErrorResponse
from ocrtune_shared.jobs import Job, JobEvent, JobEventType
from ocrtune_shared.ocr import OCRStreamEvent

E = TypeVar("E")


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
    """An ``OCRStreamEvent``, or the ``OCRTuneError`` the service sent instead of the rest of the text."""
    if not message.data.strip().startswith("{"):
        return None
    payload = json.loads(message.data)
    if isinstance(payload, dict) and "error" in payload:
        return OCRTuneError(ErrorResponse.model_validate(payload).error)
    return OCRStreamEvent.model_validate(payload)


class EventReader(Generic[E]):
    """Lines of one stream in, its items out; an error the service sends mid-stream is raised."""

    def __init__(self, decode: Callable[[SSEMessage], E | OCRTuneError | None]) -> None:
        self._sse = SSEDecoder()
        self._decode = decode

    def feed(self, line: str) -> E | None:
        message = self._sse.feed(line)
        if message is None:
            return None
        item = self._decode(message)
        if isinstance(item, OCRTuneError):
            raise item
        return item


def ends_follow(event: JobEvent) -> bool:
    return event.type == JobEventType.state and event.state is not None and event.state.terminal


def final_event(job: Job, last_seq: int) -> JobEvent:
    """The terminal event of a job that ended while its stream was down, built from ``GET /finetune/{id}``."""
    return JobEvent(
        seq=last_seq + 1,
        job_id=job.id,
        type=JobEventType.state,
        time=job.finished_at or job.updated_at,
        state=job.state,
        progress=job.progress,
        message=job.error.message if job.error else "",
    )
