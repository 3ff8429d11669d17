"""A fine-tuning job for DeepSeek-OCR-2 through the trainer's worker: validate, train, evaluate, publish.

The published adapter is in vLLM's layout (``serving_layout`` recorded in the manifest) and every
one of its weights lands on a module vLLM's DeepSeek-OCR mapper knows. (That such a converted
adapter changes vLLM exactly as the trained one changes transformers: ``test_vllm_parity.py``.)
"""

from __future__ import annotations

import json


def test_deepseek_job_publishes_a_servable_adapter(tiny_deepseek_ocr2, tmp_path):
    from ocrtune_devkit.synthetic import make_samples, write_parquet
    from ocrtune_shared.adapter_layouts import read_safetensors, unservable_modules
    from ocrtune_shared.adapters import ServingLayout
    from ocrtune_shared.finetune import FinetuneRequest
    from ocrtune_shared.jobs import JobState
    from ocrtune_shared.store import AdapterStore
    from ocrtune_trainer.settings import TrainerSettings
    from ocrtune_trainer.worker import Worker

    data = tmp_path / "data"
    data.mkdir()
    parquet = write_parquet(make_samples(6, seed=31), data / "train.parquet")
    settings = TrainerSettings(
        base_model=str(tiny_deepseek_ocr2), data_dir=tmp_path / "state", adapter_store=tmp_path / "store",
        data_roots=[data], device="cpu", run_worker=False, eval_batch_size=2,
    )
    worker = Worker(settings)
    request = FinetuneRequest(
        adapter_name="ds-job",
        train={"uri": f"file://{parquet}"},
        max_eval_samples=2,
        hyperparameters={"max_steps": 2, "warmup_steps": 0, "per_device_batch_size": 2, "gradient_accumulation_steps": 1,
                         "learning_rate": 1e-2, "max_new_tokens": 4, "optimizer": "adamw_torch"},
    )
    job = worker.jobs.submit(request)
    worker.validate_job(worker.jobs.get(job.id))
    claimed = worker.leases.claim_next(worker.worker_id)
    assert claimed is not None and claimed.id == job.id
    worker.run_job(claimed)
    done = worker.jobs.get(job.id)
    assert done.state is JobState.succeeded, done

    store = AdapterStore(settings.adapter_store)
    stored = store.resolve("ds-job")
    manifest = store.verify(stored)
    assert manifest.model_family == "deepseek_ocr2"
    assert manifest.serving_layout is ServingLayout.vllm_deepseek_ocr
    assert manifest.cer_before is not None and manifest.cer_after is not None
    names = list(read_safetensors(stored.path / "adapter_model.safetensors"))
    assert names and unservable_modules(names) == []
    assert json.loads((stored.path / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_deepseek_ocr2)
