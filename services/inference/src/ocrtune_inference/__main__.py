"""``python -m ocrtune_inference``: the service under uvicorn, configured from ``OCRTUNE_INFERENCE_*``."""

from __future__ import annotations

from ocrtune_inference.main import create_app
from ocrtune_inference.settings import InferenceSettings
from ocrtune_shared.http import serve


def main() -> None:
    settings = InferenceSettings()
    serve(create_app(settings), host=settings.host, port=settings.port, log_level="info", access_log=settings.access_log)


if __name__ == "__main__":
    main()
