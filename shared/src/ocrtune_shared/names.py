"""Adapter names and references: the one place their rules live.

A name becomes a directory in the adapter store, so it must be a safe slug and
never a path: no separators, no ``..``, no leading dot.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]|\.(?!\.)){0,62}$")


def validate_adapter_name(name: str) -> str:
    """Return ``name`` if it is a safe slug, else raise ``ValueError`` saying why."""
    if not isinstance(name, str) or not name:
        raise ValueError("adapter name must be a non-empty string")
    if "/" in name or "\\" in name or ".." in name:
        raise ValueError(f"adapter name {name!r} must not contain path separators or '..'")
    if not _NAME_RE.match(name):
        raise ValueError(
            f"adapter name {name!r} must be 1-63 characters of lowercase letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )
    return name


# The same rule as _NAME_RE, written without look-ahead so that JSON Schema tools (OpenAPI
# clients, schemathesis) can generate and check names; equivalence is tested in tests/shared.
NAME_JSON_PATTERN = r"^[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9_-]+)*\.?$"

AdapterName = Annotated[
    str,
    AfterValidator(validate_adapter_name),
    WithJsonSchema({"type": "string", "pattern": NAME_JSON_PATTERN, "minLength": 1, "maxLength": 63}),
]


class AdapterRef(BaseModel):
    """A reference to an adapter as a client writes it: ``name`` or ``name@version``."""

    model_config = ConfigDict(frozen=True)

    name: AdapterName
    version: int | None = Field(default=None, ge=1, description="None means the latest published version")

    @classmethod
    def parse(cls, text: str) -> AdapterRef:
        """Parse ``name`` or ``name@version``; raise ``ValueError`` naming what is wrong."""
        name, sep, version = text.strip().partition("@")
        if not sep:
            return cls(name=name)
        if not version.isdigit() or int(version) < 1:
            raise ValueError(f"adapter version in {text!r} must be a positive integer")
        return cls(name=name, version=int(version))

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"
