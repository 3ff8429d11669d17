"""ocrtune client, CLI and dataset builder."""

from ocrtune_client.client import AsyncOCRTuneClient, OCRTuneClient, OCRTuneError

__all__ = ["AsyncOCRTuneClient", "OCRTuneClient", "OCRTuneError"]
