from __future__ import annotations

from fastapi import Request

from ocrtune_inference.ocr import OCRService
from ocrtune_shared.errors import ErrorCode, ServiceError


def ocr_service(request: Request) -> OCRService:
    service = getattr(request.app.state, "service", None)
    if service is None or not service.engine.ready:
        raise ServiceError(503, ErrorCode.not_ready, "the engine is not ready")
    return service
