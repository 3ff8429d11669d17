"""Learning, not memorising: the trainer fine-tunes the shipped reader on one kind of
document and the adapter reads NEW lines of that kind better (issue: reader model).

The reader (``ocrtune_devkit.reader``) reads printed lines; on scanned serif receipts
(``synthetic.SCAN``) it misreads many characters. A job on 160 such lines must at least
halve the CER on 32 lines that are not in its training set, as the worker measures it and
as the published files measure it when reloaded independently.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocrtune_shared.store import AdapterStore

from .conftest import TrainerService, kill_group, start_service, tiny_hyperparameters


@pytest.fixture(scope="module")
def reader_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list]:
    from ocrtune_devkit.synthetic import SCAN, make_styled_samples, write_parquet

    root = tmp_path_factory.mktemp("reader-data")
    train = make_styled_samples(160, SCAN, seed=101)
    new = make_styled_samples(32, SCAN, seed=202, exclude={s.text for s in train})
    return write_parquet(train, root / "train.parquet"), write_parquet(new, root / "new.parquet"), new


@pytest.fixture(scope="module")
def reader_trainer(tmp_path_factory: pytest.TempPathFactory, reader_data, service_env: dict) -> Iterator[TrainerService]:
    from ocrtune_devkit.reader import reader_checkpoint

    service = start_service(
        tmp_path_factory.mktemp("reader-trainer"),
        base_model=reader_checkpoint(),
        data_roots=[Path(reader_data[0]).parent],
        extra_env=service_env,
    )
    yield service
    kill_group(service.process, signal.SIGTERM)
    kill_group(service.process)


def test_adapter_halves_cer_on_lines_it_never_trained_on(reader_trainer: TrainerService, reader_data) -> None:
    train_uri, new_uri, new_samples = reader_data
    hp = tiny_hyperparameters(max_steps=100, per_device_batch_size=8, learning_rate=2e-3, alpha=32,
                              warmup_steps=5, lr_scheduler="linear", max_new_tokens=24)
    job = reader_trainer.submit(
        {"adapter_name": "reads-receipts", "train": {"uri": str(train_uri)}, "eval": {"uri": str(new_uri)},
         "hyperparameters": hp}
    )
    final = reader_trainer.wait(job["id"], {"succeeded", "failed"}, timeout=600)
    assert final["state"] == "succeeded", final.get("error")
    before, after = final["result"]["cer_before"]["corpus_cer"], final["result"]["cer_after"]["corpus_cer"]
    assert before > 0.2, f"the reader should misread this domain (CER {before:.3f})"
    assert after <= 0.5 * before, f"CER on new lines {before:.3f} -> {after:.3f} is not at most half"

    # The published files, reloaded into a fresh reader, read the new lines as the worker said.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from ocrtune_devkit.reader import reader_checkpoint
    from ocrtune_shared.cer import character_error_rate
    from ocrtune_trainer.evaluation import transcribe

    torch.set_num_threads(1)
    stored = AdapterStore(reader_trainer.store).resolve(final["result"]["adapter"])
    processor = AutoProcessor.from_pretrained(reader_checkpoint())
    base = AutoModelForImageTextToText.from_pretrained(reader_checkpoint(), dtype=torch.float32)
    tuned = PeftModel.from_pretrained(base, str(stored.path))
    images, references = [s.png for s in new_samples], [s.text for s in new_samples]
    reloaded = character_error_rate(transcribe(tuned, processor, images, "Free OCR.", max_new_tokens=24), references)
    assert reloaded.corpus_cer == pytest.approx(after, abs=0.02)
    print(f"\nreader on new scanned lines: CER {before:.3f} -> {after:.3f} (reloaded {reloaded.corpus_cer:.3f})")
