"""The services the client tests talk to: the ones the demo leaves running (``demo_run``, tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def services(demo_run):
    if demo_run.returncode != 0 or demo_run.summary is None:
        pytest.fail("the demo did not leave services running:\n" + demo_run.stdout[-3000:] + demo_run.stderr[-3000:])
    return demo_run


@pytest.fixture(scope="module")
def held_out_png(services) -> Path:
    path = services.workdir / "data" / "held-out-0.png"
    assert path.is_file()
    return path
