from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ocrtune_inference.ocr import OCRService
from ocrtune_shared.errors import ErrorCode, ServiceError


def ocr_service(request: Request) -> OCRService:
    service = getattr(request.app.state, "service", None)
    if service is None or not service.engine.ready:
        raise ServiceError(503, ErrorCode.not_ready, "the engine is not ready")
    return service


Service = Annotated[OCRService, Depends(ocr_service)]
"""A route parameter of this type gets the ready service, or the request is answered 503."""
