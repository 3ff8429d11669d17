"""Checks made before any route runs: API keys (when configured) and the upload size limit."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ocrtune_shared.errors import ErrorCode
from ocrtune_shared.http import bearer_key_matches, error_response

ADAPTER_UPLOAD_PATH = "/adapters"
# /metrics is open as on the trainer: Prometheus scrapes it without a key (deploy/k8s's
# scrape annotations), and it carries counts and timings, never request content.
# /ui/ is the playground's static files (and /ui its redirect there): they hold no data, and every
# call they make sends the user's key.
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/redoc", "/ui/")
OPEN_EXACT_PATHS = ("/ui",)
# Multipart framing and form fields around the file.
_FORM_OVERHEAD = 64 * 1024


class RequestGuard:
    """Pure ASGI, so an oversized body is refused from its Content-Length before it is read."""

    def __init__(
        self, app: ASGIApp, *, api_keys: list[str], max_upload_bytes: int, max_adapter_bytes: int | None = None
    ) -> None:
        self.app = app
        self.api_keys = api_keys
        # JSON carries the upload as base64: 4/3 larger.
        self.max_body = max_upload_bytes * 4 // 3 + _FORM_OVERHEAD
        self.max_upload_bytes = max_upload_bytes
        # An adapter archive (POST /adapters) has its own limit: adapters outgrow images.
        self.max_adapter_bytes = max_adapter_bytes or max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.api_keys and not (scope["path"].startswith(OPEN_PATHS) or scope["path"] in OPEN_EXACT_PATHS):
            if not bearer_key_matches(headers.get(b"authorization", b"").decode("latin-1"), self.api_keys):
                await error_response(401, ErrorCode.unauthorized, "missing or wrong API key (Authorization: Bearer <key>)")(
                    scope, receive, send
                )
                return
        length = headers.get(b"content-length")
        if scope["path"] == ADAPTER_UPLOAD_PATH and scope.get("method") == "POST":
            max_body, limit, what = self.max_adapter_bytes + _FORM_OVERHEAD, self.max_adapter_bytes, "adapter upload"
        else:
            max_body, limit, what = self.max_body, self.max_upload_bytes, "upload"
        if length is not None and length.isdigit() and int(length) > max_body:
            await error_response(
                413,
                ErrorCode.payload_too_large,
                f"request body of {int(length)} bytes exceeds the {what} limit of {limit} bytes",
            )(scope, receive, send)
            return
        await self.app(scope, receive, send)
