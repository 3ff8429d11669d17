"""The inference API's documented error responses; rendering is ``ocrtune_shared.http``, shared with the trainer."""

from __future__ import annotations

from ocrtune_shared.errors import error_responses

ERROR_RESPONSES = error_responses({
    401: "Missing or wrong API key",
    404: "Unknown adapter",
    409: "Adapter trained for another model",
    413: "Upload too large",
    415: "Unsupported content type",
    422: "Invalid request, image or adapter",
    503: "Engine not ready",
})
