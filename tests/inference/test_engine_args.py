"""Engine settings reach vLLM's own config objects (the scheduler reads them, not our settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocrtune_inference.engine import engine_args
from ocrtune_inference.settings import InferenceSettings


def test_max_num_batched_tokens_reaches_the_engine_args(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    monkeypatch.setenv("OCRTUNE_INFERENCE_MAX_NUM_BATCHED_TOKENS", "16384")
    args = engine_args(InferenceSettings(), str(tiny_model_dir), {})
    assert args.max_num_batched_tokens == 16384


def test_max_num_batched_tokens_defaults_to_vllms_choice(tiny_model_dir: Path) -> None:
    assert engine_args(InferenceSettings(), str(tiny_model_dir), {}).max_num_batched_tokens is None


def test_max_num_batched_tokens_below_a_prompt_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCRTUNE_INFERENCE_MAX_NUM_BATCHED_TOKENS", "8")
    with pytest.raises(ValueError, match="max_num_batched_tokens"):
        InferenceSettings()
