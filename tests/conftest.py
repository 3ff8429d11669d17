"""Session-wide fixtures: local model checkpoints and synthetic data, built once.

Nothing here downloads anything: checkpoints are built from configs with random
weights into a cache folder (OCRTUNE_MODEL_CACHE, default ~/.cache/ocrtune/models),
reused across runs because the folder name carries a digest of the spec.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# vLLM's CPU backend reserves this many GiB of KV cache per engine; its default wants far
# more than these 24 GiB machines can spare when several engines run in one session.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    from ocrtune_devkit.tiny_models import build_tiny_qwen2_vl

    return build_tiny_qwen2_vl()


@pytest.fixture(scope="session")
def synthetic_samples():
    from ocrtune_devkit.synthetic import make_samples

    return make_samples(16, seed=1234)
