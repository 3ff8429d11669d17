"""API behaviour that needs no worker: API keys, submit-time checks, settings reaching the worker."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ocrtune_trainer.main import create_app
from ocrtune_trainer.settings import TrainerSettings
from ocrtune_trainer.supervisor import _settings_env, describe_exit


def _app(tmp_path, **overrides):
    settings = TrainerSettings(data_dir=tmp_path, adapter_store=tmp_path / "adapters", run_worker=False, **overrides)
    return create_app(settings)


def test_api_keys_are_required_when_configured(tmp_path) -> None:
    body = {"adapter_name": "keyed", "train": {"uri": "s3://bucket/train.parquet"}}
    with TestClient(_app(tmp_path, api_keys=["s3cret", "other"])) as client:
        missing = client.post("/finetune", json=body)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
        wrong = client.get("/finetune", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = client.post("/finetune", json=body, headers={"Authorization": "Bearer other"})
        assert ok.status_code == 202 and ok.json()["state"] == "validating"
        assert client.get("/healthz").status_code == 200  # probes stay open


def test_submit_fills_in_the_configured_base_model(tmp_path) -> None:
    with TestClient(_app(tmp_path, base_model="/models/base")) as client:
        job = client.post("/finetune", json={"adapter_name": "a", "train": {"uri": "s3://b/k.parquet"}}).json()
        assert job["request"]["base_model"] == "/models/base"
        assert job["request"]["hyperparameters"]["rank"] == 16  # the reference recipe's defaults
        assert job["request"]["hyperparameters"]["max_steps"] == 60
        unknown = client.get("/nope")
        assert unknown.status_code == 404 and "error" in unknown.json()


def test_settings_given_to_create_app_reach_the_worker_process(tmp_path, monkeypatch) -> None:
    settings = TrainerSettings(
        data_dir=tmp_path, data_roots=[tmp_path / "a", tmp_path / "b"], api_keys=["k:1", "k2"], torch_threads=1,
        allow_private_urls=True,
    )
    for key, value in _settings_env(settings).items():
        monkeypatch.setenv(key, value)
    roundtrip = TrainerSettings()  # what the worker process reads from its environment
    assert roundtrip == settings


def test_worker_exit_reasons_name_the_signal() -> None:
    assert "SIGKILL" in describe_exit(42, -9) and "out of memory" in describe_exit(42, -9)
    assert "status 3" in describe_exit(42, 3)


def test_remote_adapter_store_publishes_through_a_local_outbox(tmp_path) -> None:
    from ocrtune_trainer.settings import TrainerSettings

    remote = TrainerSettings(data_dir=tmp_path, adapter_store="s3://bucket/adapters")
    assert remote.local_adapter_store == tmp_path / "adapter-outbox"
    local = TrainerSettings(data_dir=tmp_path, adapter_store=str(tmp_path / "store"))
    assert local.local_adapter_store == tmp_path / "store"


def test_private_dataset_urls_are_a_422_unless_the_setting_allows_them(tmp_path) -> None:
    body = {"adapter_name": "lan", "train": {"uri": "s3://b/train.parquet"},
            "eval": {"uri": "http://10.0.0.5:9000/eval.parquet"}}
    with TestClient(_app(tmp_path / "a")) as client:
        refused = client.post("/finetune", json=body)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "uri_not_allowed" and error["where"] == "eval.uri"
    assert "10.0.0.5 is a private address" in error["message"]
    assert "OCRTUNE_TRAINER_ALLOW_PRIVATE_URLS" in error["message"]
    with TestClient(_app(tmp_path / "b", allow_private_urls=True)) as client:
        accepted = client.post("/finetune", json=body)
        metadata = client.post("/finetune", json={**body, "eval": {"uri": "http://169.254.169.254/latest"}})
    assert accepted.status_code == 202, accepted.text
    assert metadata.status_code == 422 and "cloud metadata" in metadata.json()["error"]["message"]
