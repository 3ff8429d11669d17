"""The sync and the async client are two transports of one operation table: same methods, same arguments."""

from __future__ import annotations

import inspect

from ocrtune_client import AsyncOCRTuneClient, OCRTuneClient, operations
from ocrtune_client.operations import EventStream, Operation

# Opening and closing differ by name on purpose: httpx's own names (close / aclose).
LIFECYCLE = {"close", "aclose"}


def _methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and name not in LIFECYCLE
    }


def test_both_clients_expose_the_same_operations_with_the_same_arguments() -> None:
    sync, asynchronous = _methods(OCRTuneClient), _methods(AsyncOCRTuneClient)
    assert sorted(sync) == sorted(asynchronous)
    for name, signature in sync.items():
        assert list(signature.parameters.values()) == list(asynchronous[name].parameters.values()), name
        method = getattr(AsyncOCRTuneClient, name)
        assert inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method), name


def test_every_operation_of_the_table_is_a_method_of_both_clients() -> None:
    # job_events is what follow() opens (and re-opens after a drop), not a method of its own.
    opened_by = {"job_events": "follow"}
    described = [
        name
        for name, builder in inspect.getmembers(operations, inspect.isfunction)
        if builder.__module__ == operations.__name__
        and str(inspect.signature(builder).return_annotation).startswith((Operation.__name__, EventStream.__name__))
    ]
    assert {"ocr", "ocr_stream", "load_adapter", "unload_adapter", "upload_adapter", "jobs"} <= set(described)
    for name in described:
        method = opened_by.get(name, name)
        assert hasattr(OCRTuneClient, method) and hasattr(AsyncOCRTuneClient, method), name
