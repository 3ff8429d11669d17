"""The trainer over real HTTP: a service subprocess with its worker, real training on the tiny model."""

from __future__ import annotations

import json
import time
from datetime import datetime

import httpx
import pytest

from ocrtune_shared.adapters import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, ServingLayout
from ocrtune_shared.store import AdapterStore

from .conftest import HF_REPO, S3_BUCKET, DataLayouts, TrainerService, free_port, tiny_hyperparameters

TERMINAL = {"succeeded", "failed", "cancelled"}


def _layout_uris(d: DataLayouts, http_server: str) -> dict[str, dict]:
    return {
        "parquet": {"uri": str(d.paths["parquet"])},
        "file-uri": {"uri": d.paths["parquet"].as_uri()},
        "image-folder": {"uri": str(d.paths["image_folder"])},
        "hf-disk": {"uri": str(d.paths["hf_disk"])},
        "jsonl": {"uri": str(d.paths["jsonl"]), "columns": {"image_path": "file", "text": "label"}},
        "csv": {"uri": str(d.paths["csv"]), "format": "csv", "columns": {"image_path": "path"}},
        "zip": {"uri": str(d.paths["zip"])},
        "tar": {"uri": str(d.paths["tar"])},
        "hub": {"uri": f"hf://datasets/{HF_REPO}"},
        "s3": {"uri": f"s3://{S3_BUCKET}/zh/train.parquet"},
        "s3-folder": {"uri": f"s3://{S3_BUCKET}/folder"},
        "https": {"uri": f"{http_server}/parquet/train.parquet"},
    }


def test_every_layout_trains_and_publishes_one_job_after_another(
    trainer: TrainerService, data_layouts: DataLayouts, http_server: str, inference_recorder
) -> None:
    jobs = {}
    for name, spec in _layout_uris(data_layouts, http_server).items():
        body = {
            "adapter_name": f"layout-{name}",
            "train": spec,
            "eval_fraction": 0.25,
            "hyperparameters": tiny_hyperparameters(max_steps=2),
            "export_merged": name == "parquet",
        }
        job = trainer.submit(body)
        assert job["state"] == "validating" and job["request"]["base_model"]
        jobs[name] = job["id"]
    done = {name: trainer.wait(job_id, {"succeeded"}, timeout=400) for name, job_id in jobs.items()}

    store = AdapterStore(trainer.store)
    for name, job in done.items():
        result = job["result"]
        assert (result["train_samples"], result["eval_samples"]) == (6, 2), name
        assert result["cer_before"]["samples"] == 2 and result["cer_after"]["samples"] == 2
        assert len(result["loss_curve"]) == 2 and result["samples_per_second"] > 0 and result["peak_memory_mb"] > 0
        stored = store.resolve(result["adapter"])
        manifest = store.verify(stored)  # every file present with its checksum
        assert manifest.name == f"layout-{name}" and manifest.job_id == job["id"]
        assert manifest.model_family == "qwen2_vl" and manifest.serving_layout is ServingLayout.peft
        assert (manifest.rank, manifest.alpha) == (16, 16) and "q_proj" in manifest.target_modules
        assert manifest.dataset_fingerprint and manifest.cer_before and manifest.cer_after
        assert manifest.cer_after.corpus_cer == result["cer_after"]["corpus_cer"]
        assert {ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE} <= set(manifest.files)
        assert (
            json.loads((stored.path / ADAPTER_CONFIG_FILE).read_text())["base_model_name_or_path"]
            == manifest.base_model
        )
    # The inference service was told about every new version, named in the path (the real
    # seam is tested against the real inference service in tests/e2e/test_notify_inference.py).
    told = dict(inference_recorder[1])
    for name, job in done.items():
        path = f"/adapters/layout-{name}@{store.resolve(job['result']['adapter']).version}/load"
        assert told[path] == "Bearer inference-key"  # its key, when the inference service has keys on
    # The optional merged 16-bit export sits beside the adapter it was merged from.
    merged = store.resolve(done["parquet"]["result"]["adapter"]).path / "merged"
    assert (merged / "config.json").is_file() and list(merged.glob("*.safetensors"))
    assert json.loads((merged / "config.json").read_text())["dtype"] == "bfloat16"
    # The same rows in every layout: the same fingerprint.
    assert len({store.resolve(j["result"]["adapter"]).manifest().dataset_fingerprint for j in done.values()}) == 1

    # One worker, one job at a time, in submission order.
    ordered = [done[name] for name in jobs]
    for earlier, later in zip(ordered, ordered[1:], strict=False):
        assert datetime.fromisoformat(later["started_at"]) >= datetime.fromisoformat(earlier["finished_at"])
    assert not list((trainer.store / ".staging").glob("*"))


def _sse_events(trainer: TrainerService, job_id: str, timeout: float = 400) -> list[dict]:
    events = []
    with httpx.Client(base_url=trainer.url, timeout=timeout) as client:
        with client.stream("GET", f"/finetune/{job_id}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:].strip()))
    return events


def test_training_learns_and_the_published_adapter_reads_the_images(
    trainer: TrainerService, data_layouts: DataLayouts, tiny_model_dir
) -> None:
    uri = str(data_layouts.paths["parquet"])
    hp = tiny_hyperparameters(max_steps=150, per_device_batch_size=8, learning_rate=3e-3, lr_scheduler="linear")
    job = trainer.submit({"adapter_name": "learns", "train": {"uri": uri}, "eval": {"uri": uri}, "hyperparameters": hp})
    events = _sse_events(trainer, job["id"])

    states = [e["state"] for e in events if e["type"] == "state"]
    assert states == ["validating", "queued", "running", "succeeded"], events[-3:]
    steps = [
        e["progress"]
        for e in events
        if e["type"] == "progress" and e["progress"]["phase"] == "training" and e["progress"]["step"] > 0
    ]
    assert [p["step"] for p in steps] == list(range(1, 151))
    assert all(p["learning_rate"] is not None and p["eta_seconds"] is not None for p in steps)
    evals = [e["cer"] for e in events if e["type"] == "eval"]
    assert len(evals) == 2 and evals[0]["corpus_cer"] > evals[1]["corpus_cer"]  # base, then adapter

    final = trainer.job(job["id"])
    losses = [p["loss"] for p in final["result"]["loss_curve"]]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 1.0, losses
    before, after = final["result"]["cer_before"], final["result"]["cer_after"]
    assert before["corpus_cer"] > 0.8 and after["corpus_cer"] < 0.1, (before, after)

    # Independently of the worker: reload the published files into a fresh base, the way they are served.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from ocrtune_shared.cer import character_error_rate
    from ocrtune_trainer.evaluation import transcribe

    torch.set_num_threads(1)
    stored = AdapterStore(trainer.store).resolve(final["result"]["adapter"])
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    images = [s.png for s in data_layouts.samples]
    references = [s.text for s in data_layouts.samples]
    base_cer = character_error_rate(transcribe(base, processor, images, "Free OCR.", max_new_tokens=12), references)
    tuned = PeftModel.from_pretrained(base, str(stored.path))
    tuned_cer = character_error_rate(transcribe(tuned, processor, images, "Free OCR.", max_new_tokens=12), references)
    assert base_cer.corpus_cer > 0.8 and tuned_cer.corpus_cer < 0.1, (base_cer, tuned_cer)
    assert tuned_cer.corpus_cer == pytest.approx(after["corpus_cer"])
    print(
        f"\nCER base {base_cer.corpus_cer:.3f} -> adapter {tuned_cer.corpus_cer:.3f}; training {final['result']['runtime_s']:.1f} s job runtime, {final['result']['samples_per_second']:.1f} samples/s"
    )


@pytest.mark.parametrize(
    "case, spec, where, message",
    [
        ("missing-file", {"uri": "{root}/nope/train.parquet"}, "{root}/nope/train.parquet", "does not exist"),
        ("http-404", {"uri": "{http}/nope.parquet"}, "{http}/nope.parquet", "404"),
        ("unreachable", {"uri": "http://127.0.0.1:{closed}/train.parquet"}, None, "cannot reach 127.0.0.1"),
        ("hub-404", {"uri": "hf://datasets/ocrtune/absent"}, None, "ocrtune/absent"),
        ("s3-404", {"uri": f"s3://{S3_BUCKET}/absent.parquet"}, None, "does not exist"),
        (
            "missing-column",
            {"uri": "{root}/parquet/train.parquet", "columns": {"text": "label"}},
            "train.parquet",
            "'label' is missing",
        ),
        ("corrupt-image", {"uri": "{root}/bad_images"}, "labels.tsv line 3", "images/000002.png"),
        ("empty-text", {"uri": "{root}/empty_text/train.parquet"}, "train.parquet row 3", "empty text"),
        ("zip-slip", {"uri": "{root}/evil.zip"}, "evil.zip", "'../../escaped.txt' points outside"),
        ("tar-slip", {"uri": "{root}/evil.tar"}, "evil.tar", "'../outside.png' points outside"),
    ],
)
def test_bad_datasets_fail_with_a_precise_message(
    case, spec, where, message, trainer: TrainerService, data_layouts: DataLayouts, http_server: str
) -> None:
    values = {"root": data_layouts.root, "http": http_server, "closed": free_port()}
    spec = {k: (v.format(**values) if isinstance(v, str) else v) for k, v in spec.items()}
    job = trainer.submit({"adapter_name": f"bad-{case}", "train": spec, "hyperparameters": tiny_hyperparameters()})
    # Validation runs beside training: a bad dataset fails at once even while other jobs train.
    failed = trainer.wait(job["id"], {"failed"}, timeout=60)
    error = failed["error"]
    assert message in error["message"], error
    if where is not None:
        assert error["where"] == where.format(**values), error
    assert failed["started_at"] is None  # never reached training


@pytest.mark.parametrize(
    "body, where",
    [
        ({"adapter_name": "../etc", "train": {"uri": "s3://b/k"}}, "adapter_name"),
        ({"adapter_name": "ok", "train": {"uri": "ftp://host/x"}}, "train.uri"),
        ({"adapter_name": "ok", "train": {"uri": "/etc/passwd"}}, "train.uri"),
        ({"adapter_name": "ok", "train": {"uri": "http://169.254.169.254/latest"}}, "train.uri"),
        ({"adapter_name": "ok", "train": {"uri": "s3://b/k"}, "hyperparameters": {"rank": 0}}, "hyperparameters.rank"),
        (
            {
                "adapter_name": "ok",
                "train": {"uri": "s3://b/k"},
                "hyperparameters": {"max_steps": 2, "warmup_steps": 5},
            },
            None,
        ),
        (
            {"adapter_name": "ok", "train": {"uri": "s3://b/k"}, "hyperparameters": {"target_modules": ["q_proj; rm"]}},
            "hyperparameters.target_modules",
        ),
    ],
)
def test_request_errors_are_422_with_the_error_body(body, where, trainer: TrainerService) -> None:
    with trainer.client() as client:
        response = client.post("/finetune", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] in {"invalid_request", "uri_not_allowed"} and error["message"]
    if where:
        assert error["where"] == where


def test_cancel_stops_a_running_job_within_seconds(trainer: TrainerService, data_layouts: DataLayouts) -> None:
    body = {
        "adapter_name": "cancel-me",
        "train": {"uri": str(data_layouts.paths["parquet"])},
        "hyperparameters": tiny_hyperparameters(max_steps=100_000),
    }
    job = trainer.submit(body)
    trainer.wait(job["id"], {"running"}, timeout=400, predicate=lambda j: j["progress"]["step"] >= 2)
    asked = time.monotonic()
    with trainer.client() as client:
        response = client.post(f"/finetune/{job['id']}/cancel")
    assert response.status_code == 200
    cancelled = trainer.wait(job["id"], {"cancelled"}, timeout=30)
    assert time.monotonic() - asked < 10
    assert cancelled["progress"]["step"] < 100_000 and cancelled["result"]["adapter"] is None
    with trainer.client() as client:
        again = client.post(f"/finetune/{job['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_conflict"
    # The device is free again: the next job runs.
    nxt = trainer.submit({**body, "adapter_name": "after-cancel", "hyperparameters": tiny_hyperparameters(max_steps=1)})
    trainer.wait(nxt["id"], {"succeeded"}, timeout=120)


def test_list_get_health_and_metrics(trainer: TrainerService) -> None:
    with trainer.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready" and ready["worker"]["alive"]
        first = client.get("/finetune", params={"limit": 2}).json()
        assert len(first["jobs"]) == 2 and first["next_cursor"]
        second = client.get("/finetune", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert {j["id"] for j in first["jobs"]}.isdisjoint({j["id"] for j in second["jobs"]})
        failed = client.get("/finetune", params={"state": "failed", "limit": 100}).json()["jobs"]
        assert failed and all(j["state"] == "failed" for j in failed)
        bad_state = client.get("/finetune", params={"state": "sleeping"})
        assert bad_state.status_code == 422 and bad_state.json()["error"]["where"] == "query.state"
        missing = client.get("/finetune/ftjob-nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
        assert client.get("/finetune/ftjob-nope/events").status_code == 404
        metrics = client.get("/metrics").text
        assert 'ocrtune_trainer_jobs{state="failed"}' in metrics
        assert "ocrtune_trainer_jobs_submitted_total" in metrics and "ocrtune_trainer_worker_up 1.0" in metrics
