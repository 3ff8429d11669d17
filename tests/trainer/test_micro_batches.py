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


@pytest.mark.parametrize(
    ("per_device", "accumulation", "cap", "processes", "expected"),
    [
        (2, 4, 8, 2, (4, 1)),  # the reference recipe on two GPUs: 4 samples each, the same 8 a step
        (4, 1, 8, 2, (2, 1)),  # the tests' DDP job
        (2, 4, 1, 2, (2, 2)),  # max_micro_batch=1 never goes below what the job asked
        (8, 4, 8, 4, (8, 1)),
        (2, 4, 8, 1, (8, 1)),  # one process: micro_batches
    ],
)
def test_processes_share_a_steps_samples(per_device, accumulation, cap, processes, expected):
    from ocrtune_trainer.training import process_batches

    micro, accum = process_batches(per_device, accumulation, cap, processes)
    assert (micro, accum) == expected
    assert micro * accum * processes == per_device * accumulation


def test_processes_are_as_many_as_share_a_step_evenly(tmp_path):
    from ocrtune_shared.finetune import HyperParameters
    from ocrtune_trainer.ddp import training_processes
    from ocrtune_trainer.training import pick_runtime

    settings = TrainerSettings(data_dir=tmp_path, device="cpu", training_processes=3)
    runtime = pick_runtime(settings)
    assert training_processes(settings, runtime, HyperParameters(per_device_batch_size=2, gradient_accumulation_steps=2)) == 2
    assert training_processes(settings, runtime, HyperParameters(per_device_batch_size=3, gradient_accumulation_steps=1)) == 3
    auto = TrainerSettings(data_dir=tmp_path, device="cpu")  # 0: one per GPU; none here
    assert training_processes(auto, pick_runtime(auto), HyperParameters()) == 1
