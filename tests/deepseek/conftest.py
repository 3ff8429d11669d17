"""Reduced DeepSeek-OCR checkpoints (random weights, built locally once) and adapters made on them."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_deepseek_ocr2() -> Path:
    from ocrtune_devkit.deepseek import build_tiny_deepseek_ocr2

    return build_tiny_deepseek_ocr2()


@pytest.fixture(scope="session")
def reduced_deepseek_ocr2():
    from ocrtune_devkit.deepseek import build_reduced_deepseek_ocr2

    return build_reduced_deepseek_ocr2()
