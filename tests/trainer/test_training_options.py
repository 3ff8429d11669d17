"""The recipe's training options on the real service: epochs, eval loss, early stopping, tensorboard, checkpoints."""

from __future__ import annotations

from .conftest import DataLayouts, TrainerService, tiny_hyperparameters


def _events(trainer: TrainerService, job_id: str, **params: object) -> list[dict]:
    with trainer.client() as client:
        return client.get(f"/finetune/{job_id}/events/list", params={"limit": 1000, **params}).json()["events"]


def test_epochs_eval_loss_checkpoints_and_tensorboard(trainer: TrainerService, data_layouts: DataLayouts) -> None:
    uri = str(data_layouts.paths["parquet"])  # 8 rows; eval on the same file, so all 8 train
    hp = tiny_hyperparameters(max_steps=None, num_train_epochs=15, eval_steps=5, save_steps=10,
                              report_to=["tensorboard"])
    job = trainer.submit({"adapter_name": "epochs", "train": {"uri": uri}, "eval": {"uri": uri}, "hyperparameters": hp})

    # The loss curve is in the job while it trains, not only at its end.
    running = trainer.wait(job["id"], {"running"}, timeout=400,
                           predicate=lambda j: len(j["result"]["loss_curve"]) >= 3)
    assert running["progress"]["total_steps"] == 30  # 15 epochs of 8 rows, 4 a step
    with trainer.client() as client:
        early = client.get(f"/finetune/{job['id']}/checkpoints").json()
    assert all(c["kept"] for c in early["checkpoints"])  # on disk while the job trains

    done = trainer.wait(job["id"], {"succeeded"}, timeout=400)
    result = done["result"]
    assert [p["step"] for p in result["loss_curve"]] == list(range(1, 31))
    eval_curve = result["eval_loss_curve"]
    assert [p["step"] for p in eval_curve] == [5, 10, 15, 20, 25, 30]
    assert eval_curve[-1]["loss"] < eval_curve[0]["loss"]  # it learns the eval rows (they are the train rows)

    with trainer.client() as client:
        listed = client.get(f"/finetune/{job['id']}/checkpoints").json()
    checkpoints = listed["checkpoints"]
    assert [c["step"] for c in checkpoints] == [10, 20, 30] and listed["resumes"] == 0
    train_loss = {p["step"]: p["loss"] for p in result["loss_curve"]}
    eval_loss = {p["step"]: p["loss"] for p in eval_curve}
    for checkpoint in checkpoints:
        assert checkpoint["loss"] == train_loss[checkpoint["step"]]
        assert checkpoint["eval_loss"] == eval_loss[checkpoint["step"]]
        assert checkpoint["path"].endswith(f"/{job['id']}/trainer/checkpoint-{checkpoint['step']}")
        assert not checkpoint["kept"]  # the job ended: its work folder is gone
    saved = _events(trainer, job["id"], type="checkpoint")
    assert [e["progress"]["step"] for e in saved] == [10, 20, 30]
    evaluations = [e["progress"] for e in _events(trainer, job["id"], type="progress")
                   if e["progress"]["eval_loss"] and e["progress"]["phase"] == "training"]
    assert [(p["step"], p["eval_loss"]) for p in evaluations] == [(p["step"], p["loss"]) for p in eval_curve]

    # The same curves in tensorboard's files, under the data dir, kept after the job.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(trainer.data_dir / "tensorboard" / job["id"]))
    board.Reload()
    assert [e.step for e in board.Scalars("train/loss")] == list(range(1, 31))
    assert [(e.step, round(e.value, 4)) for e in board.Scalars("eval/loss")] == [
        (p["step"], round(p["loss"], 4)) for p in eval_curve]


def test_early_stopping_ends_training_at_the_first_evaluation_without_progress(
    trainer: TrainerService, data_layouts: DataLayouts
) -> None:
    uri = str(data_layouts.paths["parquet"])
    # A threshold no eval loss can beat: the second evaluation is one without progress.
    hp = tiny_hyperparameters(max_steps=40, eval_steps=1, early_stopping_patience=1, early_stopping_threshold=100.0)
    job = trainer.submit({"adapter_name": "stops-early", "train": {"uri": uri}, "eval": {"uri": uri},
                          "hyperparameters": hp})
    done = trainer.wait(job["id"], {"succeeded"}, timeout=400)
    assert [p["step"] for p in done["result"]["loss_curve"]] == [1, 2]
    assert [p["step"] for p in done["result"]["eval_loss_curve"]] == [1, 2]
    assert done["request"]["hyperparameters"]["save_steps"] == 1  # checkpoints on evaluations, for the best one
    assert any("early stopping after step 2" in e["message"] for e in _events(trainer, job["id"], type="log"))
    assert done["result"]["adapter"] == "stops-early@1"
