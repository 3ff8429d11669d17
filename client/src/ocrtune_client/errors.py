"""``OCRTuneError``, the one exception the client raises, and how answers become one.

Every failure a caller can act on (an error answer from a service, a service that
cannot be reached, an answer that is not what the schema says) is raised as
``OCRTuneError``, which carries the server's ``ErrorBody`` when there is one.
"""

from __future__ import annotations

import json
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from ocrtune_shared.errors import ErrorBody, ErrorCode, ErrorResponse

M = TypeVar("M", bound=BaseModel)


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
    """``response`` as ``model``, or the ``OCRTuneError`` it stands for."""
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
