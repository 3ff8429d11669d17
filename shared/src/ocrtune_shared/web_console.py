"""Serving a service's web console: its own pages under ``/ui/``, the assets both consoles share under ``/ui/common/``.

The pages are static files (package data, no build step) and hold no data: every call
they make goes to the service's API with the key the user typed, so the API-key checks
let ``/ui/`` through. Needs FastAPI (``ocrtune-shared[server]``).
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

CONSOLE_PATH = "/ui"
SHARED_ASSETS = Path(__file__).with_name("console_assets")

# The pages keep the user's API key in sessionStorage: scripts only from the service
# itself (no inline script, nothing third-party) is what keeps an injected one from reading it.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class ConsoleFiles(StaticFiles):
    """StaticFiles with the console's security headers, revalidated on every load (ETag) so an upgrade shows at once."""

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(SECURITY_HEADERS)
        response.headers["Cache-Control"] = "no-cache"
        return response


def attach_console(app: FastAPI, pages: Path) -> None:
    """Serve ``pages`` (the service's own index.html and scripts) at /ui/ and the shared assets at /ui/common/."""
    # Mounted in this order: /ui/common must match before /ui takes everything under it.
    app.mount(f"{CONSOLE_PATH}/common", ConsoleFiles(directory=SHARED_ASSETS), name="console-common")
    app.mount(CONSOLE_PATH, ConsoleFiles(directory=pages, html=True), name="console")
