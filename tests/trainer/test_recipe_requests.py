"""The recipe's training options as requests, and the job's checkpoints and event pages, without a worker."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ocrtune_shared.finetune import DEFAULT_SAVE_STEPS, FinetuneRequest, HyperParameters
from ocrtune_shared.jobs import JobEventType
from ocrtune_trainer.job_store import JobStore
from ocrtune_trainer.main import create_app
from ocrtune_trainer.settings import TrainerSettings

TRAIN = {"uri": "s3://bucket/train.parquet"}


def _app(tmp_path):
    settings = TrainerSettings(data_dir=tmp_path, adapter_store=tmp_path / "adapters", run_worker=False)
    return create_app(settings)


def test_defaults_stay_the_reference_recipe_and_epochs_replace_steps() -> None:
    hp = HyperParameters()
    assert (hp.max_steps, hp.num_train_epochs, hp.save_steps, hp.eval_steps, hp.report_to) == (
        60, None, DEFAULT_SAVE_STEPS, None, [])
    epochs = HyperParameters(num_train_epochs=2.5)
    assert epochs.max_steps is None and epochs.num_train_epochs == 2.5
    # What the job store keeps reads back as the same recipe.
    for kept in (hp, epochs, HyperParameters(eval_steps=3, early_stopping_patience=2)):
        assert HyperParameters.model_validate(kept.model_dump(mode="json")) == kept
    # Early stopping keeps the best checkpoint: checkpoints fall on evaluations unless told otherwise.
    assert HyperParameters(eval_steps=3, early_stopping_patience=2).save_steps == 3
    assert HyperParameters(eval_steps=3, early_stopping_patience=2, save_steps=9).save_steps == 9
    # warmup_steps is checked against max_steps only when steps are counted that way.
    assert FinetuneRequest(adapter_name="a", train=TRAIN, hyperparameters={"num_train_epochs": 1, "warmup_steps": 80})


@pytest.mark.parametrize(
    ("hyperparameters", "where", "words"),
    [
        ({"max_steps": 10, "num_train_epochs": 2}, "hyperparameters.num_train_epochs", "not both"),
        ({"num_train_epochs": 0}, "hyperparameters.num_train_epochs", "greater than 0"),
        ({"early_stopping_patience": 2}, "hyperparameters.early_stopping_patience", "needs eval_steps"),
        ({"eval_steps": 4, "early_stopping_patience": 2, "save_steps": 6}, "hyperparameters.save_steps",
         "multiple of eval_steps (4)"),
        ({"eval_steps": 0}, "hyperparameters.eval_steps", "greater than or equal to 1"),
        ({"early_stopping_threshold": -1}, "hyperparameters.early_stopping_threshold", "greater than or equal to 0"),
        ({"save_total_limit": 0}, "hyperparameters.save_total_limit", "greater than or equal to 1"),
        ({"report_to": ["wandb"]}, "hyperparameters.report_to.0", "'tensorboard'"),
    ],
)
def test_contradictory_or_bad_training_options_are_a_422_naming_the_field(
    tmp_path, hyperparameters: dict, where: str, words: str
) -> None:
    with TestClient(_app(tmp_path)) as client:
        response = client.post("/finetune", json={"adapter_name": "bad", "train": TRAIN,
                                                  "hyperparameters": hyperparameters})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["where"] == where and words in error["message"], error


def test_a_job_by_epochs_is_stored_as_asked(tmp_path) -> None:
    body = {"adapter_name": "epochs", "train": TRAIN,
            "hyperparameters": {"max_steps": None, "num_train_epochs": 3, "eval_steps": 5, "report_to": ["tensorboard"]}}
    with TestClient(_app(tmp_path)) as client:
        response = client.post("/finetune", json=body)
        assert response.status_code == 202, response.text
        hp = client.get(f"/finetune/{response.json()['id']}").json()["request"]["hyperparameters"]
    assert (hp["max_steps"], hp["num_train_epochs"], hp["eval_steps"], hp["report_to"]) == (None, 3, 5, ["tensorboard"])


def test_checkpoints_of_a_job_and_of_an_unknown_one(tmp_path) -> None:
    with TestClient(_app(tmp_path)) as client:
        job = client.post("/finetune", json={"adapter_name": "c", "train": TRAIN}).json()
        listed = client.get(f"/finetune/{job['id']}/checkpoints")
        assert listed.status_code == 200 and listed.json() == {"job_id": job["id"], "checkpoints": [], "resumes": 0}
        missing = client.get("/finetune/ftjob-nope/checkpoints")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"


def test_events_come_as_json_pages(tmp_path) -> None:
    with TestClient(_app(tmp_path)) as client:
        job_id = client.post("/finetune", json={"adapter_name": "ev", "train": TRAIN}).json()["id"]
        store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")  # the worker's side: events written as it goes
        try:
            for i in range(6):
                store.log(job_id, f"line {i}", JobEventType.checkpoint if i % 3 == 0 else JobEventType.log)
        finally:
            store.close()

        seen, after, pages = [], 0, 0
        while True:
            page = client.get(f"/finetune/{job_id}/events/list", params={"after": after, "limit": 3})
            assert page.status_code == 200, page.text
            body = page.json()
            assert 1 <= len(body["events"]) <= 3
            seen += body["events"]
            pages += 1
            if body["next_after"] is None:
                break
            assert body["next_after"] == body["events"][-1]["seq"]
            after = body["next_after"]
        # "job created" and the six lines, in order, each once, over three pages.
        assert pages == 3 and [e["message"] for e in seen] == ["job created"] + [f"line {i}" for i in range(6)]
        assert [e["seq"] for e in seen] == sorted({e["seq"] for e in seen})
        # The whole log in one page equals the pages put together; a type filter keeps that type only.
        whole = client.get(f"/finetune/{job_id}/events/list", params={"limit": 1000}).json()
        assert whole["events"] == seen and whole["next_after"] is None
        checkpoints = client.get(f"/finetune/{job_id}/events/list", params={"type": "checkpoint"}).json()["events"]
        assert [e["message"] for e in checkpoints] == ["line 0", "line 3"]
        past_the_end = client.get(f"/finetune/{job_id}/events/list", params={"after": seen[-1]["seq"]}).json()
        assert past_the_end == {"events": [], "next_after": None}

        for params, where in [({"after": -1}, "query.after"), ({"limit": 0}, "query.limit"),
                              ({"limit": 1001}, "query.limit"), ({"type": "gossip"}, "query.type"),
                              ({"after": "x"}, "query.after")]:
            bad = client.get(f"/finetune/{job_id}/events/list", params=params)
            assert bad.status_code == 422 and bad.json()["error"]["where"] == where, (params, bad.text)
        missing = client.get("/finetune/ftjob-nope/events/list")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
