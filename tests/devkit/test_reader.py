"""The shipped reader: a small pretrained line-OCR model that really reads (issue: reader model).

Read with transformers from the files in the repository (no download, no cache): it reads
printed lines of its pre-training kind nearly without error and misreads the demo's
scanned receipts, which is what the fine-tune is for. The pre-training script itself
runs (a two-step smoke run on the CPU).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ocrtune_devkit import reader
from ocrtune_devkit.synthetic import PRINT, SCAN


@pytest.fixture(scope="module")
def reader_model():
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = reader.reader_checkpoint()
    return AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval(), AutoProcessor.from_pretrained(folder)


def test_checkpoint_is_shipped_in_shards_under_16_mb_with_its_readme() -> None:
    folder = reader.reader_checkpoint()
    shards = sorted(folder.glob("*.safetensors"))
    assert len(shards) >= 2 and all(s.stat().st_size < 16 * 1024 * 1024 for s in shards)
    readme = (folder / "README.md").read_text()
    assert "python -m ocrtune_devkit.reader train" in readme and "CER" in readme
    assert json.loads((folder / "ocrtune_spec.json").read_text())["chars"] == reader.READER_SPEC["chars"]


def test_reads_printed_lines_of_its_pretraining_kind(reader_model) -> None:
    model, processor = reader_model
    images, texts = reader.held_out(PRINT, 48, seed=2024)
    cer = reader.corpus_cer(reader.read_lines(model, processor, images), texts)
    assert cer < 0.05, f"the reader's CER on printed lines is {cer:.3f}"


def test_misreads_the_demo_domain(reader_model) -> None:
    model, processor = reader_model
    images, texts = reader.held_out(SCAN, 32, seed=2025)
    predictions = reader.read_lines(model, processor, images)
    cer = reader.corpus_cer(predictions, texts)
    # Clearly non-zero (there is something to fine-tune), yet it reads: most characters it
    # prints are real text of the charset, not broken bytes.
    assert 0.2 < cer < 0.95, cer
    printed = "".join(predictions)
    assert printed and sum(ch in reader.READER_SPEC["chars"] for ch in printed) / len(printed) > 0.9


def test_pretraining_script_runs_on_the_cpu(tmp_path) -> None:
    out = tmp_path / "reader"
    done = subprocess.run(
        [sys.executable, "-m", "ocrtune_devkit.reader", "train", "--out", str(out), "--steps", "2", "--batch", "4",
         "--workers", "0", "--device", "cpu", "--warmup", "1", "--log-every", "1", "--eval-every", "2",
         "--eval-lines", "2"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "pretraining.json").read_text())
    assert summary["steps"] == 2 and len(summary["history"]) == 2 and "print_cer" in summary["history"][-1]
    assert (out / "config.json").exists() and list(out.glob("*.safetensors"))
