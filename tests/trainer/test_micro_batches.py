"""A step's samples regrouped into larger micro-batches: same samples per optimizer step, fewer passes."""

from __future__ import annotations

import pytest

from ocrtune_trainer.settings import TrainerSettings
from ocrtune_trainer.training import micro_batches


@pytest.mark.parametrize(
    ("per_device", "accumulation", "cap", "expected"),
    [
        (2, 4, 8, (8, 1)),  # the reference recipe: 8 samples in one pass (3x faster on the H200)
        (2, 8, 8, (8, 2)),
        (4, 4, 6, (4, 4)),  # no divisor of 16 between 5 and 6: left as asked
        (3, 5, 8, (5, 3)),
        (8, 1, 4, (8, 1)),  # never smaller than asked
        (2, 4, 1, (2, 4)),  # max_micro_batch=1: as the job asks
    ],
)
def test_same_samples_per_step(per_device, accumulation, cap, expected):
    micro, accum = micro_batches(per_device, accumulation, cap)
    assert (micro, accum) == expected
    assert micro * accum == per_device * accumulation


def test_default_cap_is_eight(tmp_path):
    assert TrainerSettings(data_dir=tmp_path / "d", adapter_store=tmp_path / "s").max_micro_batch == 8
