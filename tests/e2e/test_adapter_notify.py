"""The trainer -> inference seam, against the real inference service the demo left running.

After publishing, the trainer asks the inference service to load the new version. The
version must travel in the path (``name@version``), the one form the load route reads: a
version the store has loads, one it lacks is a 404 that the trainer reports as a note.
(This module sorts before test_demo.py, whose last test stops the demo's services.)
"""

from __future__ import annotations

from pathlib import Path

from ocrtune_shared.store import StoredAdapter
from ocrtune_trainer.publish import notify_inference


def test_notify_loads_the_published_version_on_the_real_service(demo_run) -> None:
    name, version = demo_run.summary["adapter"].split("@")
    stored = StoredAdapter(name, int(version), Path("unused"))
    assert notify_inference(demo_run.inference_url, stored) is None


def test_notify_of_a_version_the_store_lacks_is_reported(demo_run) -> None:
    name, version = demo_run.summary["adapter"].split("@")
    note = notify_inference(demo_run.inference_url, StoredAdapter(name, int(version) + 41, Path("unused")))
    assert note is not None and "404" in note and f"{name}@{int(version) + 41}" in note
