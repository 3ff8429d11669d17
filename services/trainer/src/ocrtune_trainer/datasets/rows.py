"""What a dataset is once read: rows of (image bytes, text), the problems found, and the one error type.

Every problem names where it was found (URI, file, row or line), so a user can fix
their own files from the message alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ocrtune_shared.errors import ErrorCode


class DatasetError(Exception):
    """A dataset that cannot be used; ``where`` names the URI, file or row."""

    def __init__(self, code: ErrorCode, message: str, where: str | None = None) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.code = code
        self.message = message
        self.where = where


@dataclass
class DatasetRow:
    image: bytes | None
    text: str
    where: str
    """Where the row came from, for messages: 'train.parquet row 3', 'labels.tsv line 7'."""
    image_name: str | None = None


@dataclass
class RowProblem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class RawDataset:
    rows: list[DatasetRow]
    problems: list[RowProblem] = field(default_factory=list)
    source: str = ""
