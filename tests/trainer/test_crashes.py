"""kill -9 of the worker mid-job, and of the whole service: no job stays ``running``, queued jobs still run."""

from __future__ import annotations

import os
import signal
import time

from .conftest import DataLayouts, kill_group, start_service, tiny_hyperparameters


def test_worker_killed_mid_job_fails_it_and_the_queue_goes_on(
    tmp_path, tiny_model_dir, data_layouts: DataLayouts
) -> None:
    service = start_service(tmp_path / "svc", base_model=tiny_model_dir, data_roots=[data_layouts.root])
    try:
        train = {"uri": str(data_layouts.paths["parquet"])}
        long_job = service.submit(
            {"adapter_name": "killed", "train": train, "hyperparameters": tiny_hyperparameters(max_steps=100_000)}
        )
        queued = service.submit(
            {"adapter_name": "survivor", "train": train, "hyperparameters": tiny_hyperparameters(max_steps=2)}
        )
        service.wait(long_job["id"], {"running"}, timeout=120, predicate=lambda j: j["progress"]["step"] >= 2)
        first_worker = service.worker_pid()
        os.kill(first_worker, signal.SIGKILL)

        failed = service.wait(long_job["id"], {"failed"}, timeout=30)
        assert "SIGKILL" in failed["error"]["message"] and str(first_worker) in failed["error"]["message"]
        # A new worker takes over and runs what was queued behind the dead job.
        done = service.wait(queued["id"], {"succeeded"}, timeout=180)
        assert done["result"]["adapter"] == "survivor@1"
        with service.client() as client:
            ready = client.get("/readyz").json()
        assert ready["worker"]["restarts"] >= 1 and ready["worker"]["pid"] != first_worker

        # Now the whole service dies mid-job (API and worker, kill -9 on the group) ...
        doomed = service.submit(
            {"adapter_name": "doomed", "train": train, "hyperparameters": tiny_hyperparameters(max_steps=100_000)}
        )
        after = service.submit(
            {"adapter_name": "after-restart", "train": train, "hyperparameters": tiny_hyperparameters(max_steps=1)}
        )
        service.wait(doomed["id"], {"running"}, timeout=120, predicate=lambda j: j["progress"]["step"] >= 1)
        kill_group(service.process, signal.SIGKILL)
    finally:
        kill_group(service.process)

    # ... and comes back on the same database: the job is failed, never stuck running; the queue runs.
    time.sleep(0.5)
    service = start_service(tmp_path / "svc", base_model=tiny_model_dir, data_roots=[data_layouts.root])
    try:
        failed = service.wait(doomed["id"], {"failed"}, timeout=60)
        assert "no longer exists" in failed["error"]["message"]
        service.wait(after["id"], {"succeeded"}, timeout=180)
    finally:
        kill_group(service.process)


def test_sigterm_stops_training_and_leaves_no_job_running(tmp_path, tiny_model_dir, data_layouts: DataLayouts) -> None:
    service = start_service(tmp_path / "svc", base_model=tiny_model_dir, data_roots=[data_layouts.root])
    try:
        job = service.submit(
            {
                "adapter_name": "interrupted",
                "train": {"uri": str(data_layouts.paths["parquet"])},
                "hyperparameters": tiny_hyperparameters(max_steps=100_000),
            }
        )
        service.wait(job["id"], {"running"}, timeout=120, predicate=lambda j: j["progress"]["step"] >= 1)
        worker = service.worker_pid()
        service.process.send_signal(signal.SIGTERM)  # the API process only, as an orchestrator does
        # uvicorn shuts down cleanly, then re-raises the signal so the exit status tells it was SIGTERM.
        assert service.process.wait(30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in service.log.read_text()
        time.sleep(0.5)
        # The worker went with it (reaped, or a zombie awaiting its reaper).
        assert (
            not os.path.exists(f"/proc/{worker}")
            or open(f"/proc/{worker}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
        )
    finally:
        kill_group(service.process)
    from ocrtune_trainer.job_store import JobStore

    jobs = JobStore(f"sqlite:///{tmp_path / 'svc' / 'jobs.db'}")
    try:
        stopped = jobs.get(job["id"])
        assert stopped.state.value == "failed" and "shut down" in stopped.error.message
    finally:
        jobs.close()


def test_worker_killed_after_a_checkpoint_resumes_the_job_from_it(
    tmp_path, tiny_model_dir, data_layouts: DataLayouts
) -> None:
    service = start_service(tmp_path / "svc", base_model=tiny_model_dir, data_roots=[data_layouts.root])
    try:
        job = service.submit({
            "adapter_name": "resumed",
            "train": {"uri": str(data_layouts.paths["parquet"])},
            "hyperparameters": tiny_hyperparameters(max_steps=60, save_steps=5),
        })

        def past_a_checkpoint(j: dict) -> bool:
            saved = [c["step"] for c in j["result"]["checkpoints"] if c["kept"]]
            return bool(saved) and j["progress"]["step"] > saved[-1]

        before = service.wait(job["id"], {"running"}, timeout=180, predicate=past_a_checkpoint)
        killed_worker = service.worker_pid()
        os.kill(killed_worker, signal.SIGKILL)

        done = service.wait(job["id"], {"succeeded"}, timeout=240)
        with service.client() as client:
            events = client.get(f"/finetune/{job['id']}/events/list", params={"limit": 1000}).json()["events"]
            checkpoints = client.get(f"/finetune/{job['id']}/checkpoints").json()
    finally:
        kill_group(service.process)

    assert done["resumes"] == 1 and checkpoints["resumes"] == 1
    requeued = next(e for e in events if e["type"] == "state" and e["state"] == "queued" and "SIGKILL" in e["message"])
    assert str(killed_worker) in requeued["message"]
    resumed_at = [i for i, e in enumerate(events) if e["message"].startswith("resuming from the checkpoint at step")]
    assert len(resumed_at) == 1
    step = events[resumed_at[0]]["progress"]["step"]
    assert step % 5 == 0 and step >= before["result"]["checkpoints"][-1]["step"]
    # The second run trained from the checkpoint's next step, not from the start ...
    later_steps = [e["progress"]["step"] for e in events[resumed_at[0]:]
                   if e["type"] == "progress" and e["progress"]["phase"] == "training" and not e["message"]]
    assert later_steps == list(range(step + 1, 61))
    # ... and the curve continues from it: each step once, those before it as the first run logged them,
    # those trained again (after the checkpoint, before the kill) the same as the first time (RNG restored).
    curve = done["result"]["loss_curve"]
    assert [p["step"] for p in curve] == list(range(1, 61))
    first_run = {p["step"]: p["loss"] for p in before["result"]["loss_curve"]}
    assert first_run and all(abs(curve[s - 1]["loss"] - loss) < 1e-4 for s, loss in first_run.items())
    assert [c["step"] for c in checkpoints["checkpoints"]] == list(range(5, 61, 5))
    # The base model was evaluated once; the adapter once, after training.
    assert len([e for e in events if e["type"] == "eval"]) == 2
    assert done["result"]["adapter"] == "resumed@1" and done["result"]["cer_before"] is not None


def test_a_job_past_a_checkpoint_when_the_trainer_is_stopped_resumes_when_it_starts_again(
    tmp_path, tiny_model_dir, data_layouts: DataLayouts
) -> None:
    service = start_service(tmp_path / "svc", base_model=tiny_model_dir, data_roots=[data_layouts.root])
    try:
        job = service.submit({
            "adapter_name": "across-restarts",
            "train": {"uri": str(data_layouts.paths["parquet"])},
            "hyperparameters": tiny_hyperparameters(max_steps=40, save_steps=3),
        })
        service.wait(job["id"], {"running"}, timeout=180, predicate=lambda j: bool(j["result"]["checkpoints"]))
        service.process.send_signal(signal.SIGTERM)  # a deployment stopping the service
        assert service.process.wait(30) in (0, -signal.SIGTERM)
    finally:
        kill_group(service.process)

    from ocrtune_trainer.job_store import JobStore

    jobs = JobStore(f"sqlite:///{tmp_path / 'svc' / 'jobs.db'}")
    try:
        stopped = jobs.get(job["id"])
    finally:
        jobs.close()
    assert stopped.state.value == "queued" and stopped.resumes == 1, stopped
    time.sleep(0.5)
    service = start_service(tmp_path / "svc", base_model=tiny_model_dir, data_roots=[data_layouts.root])
    try:
        done = service.wait(job["id"], {"succeeded"}, timeout=240)
    finally:
        kill_group(service.process)
    assert [p["step"] for p in done["result"]["loss_curve"]] == list(range(1, 41))
    assert done["resumes"] == 1 and done["result"]["adapter"] == "across-restarts@1"
