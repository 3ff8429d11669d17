"""Dataset URIs -> rows of (image bytes, text), whatever layout the user brings.

Two steps: ``sources.fetch`` makes the URI a local path, then ``formats.read_rows`` reads
that path in its format; ``rows`` holds what both produce. Every problem is a
``DatasetError`` that names the file and row it was found at.
"""

from ocrtune_trainer.datasets.formats import detect_format, read_rows
from ocrtune_trainer.datasets.rows import DatasetError, DatasetRow, RawDataset, RowProblem
from ocrtune_trainer.datasets.sources import check_uri_allowed, fetch

__all__ = [
    "DatasetError",
    "DatasetRow",
    "RawDataset",
    "RowProblem",
    "check_uri_allowed",
    "detect_format",
    "fetch",
    "read_rows",
]
