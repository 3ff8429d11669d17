"""ocrtune client, CLI and dataset builder."""

from ocrtune_client.async_client import AsyncOCRTuneClient
from ocrtune_client.client import OCRTuneClient
from ocrtune_client.errors import OCRTuneError

__all__ = ["AsyncOCRTuneClient", "OCRTuneClient", "OCRTuneError"]
