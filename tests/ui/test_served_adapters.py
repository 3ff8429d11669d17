"""The trainer's GET /adapters against the real inference service: its list, read with the trainer's key."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ocrtune_trainer.main import create_app
from ocrtune_trainer.settings import TrainerSettings

from .conftest import FIXED_ADAPTER, TRAINER_KEY, Console


def test_the_dashboard_lists_what_the_inference_service_lists(console: Console) -> None:
    with console.trainer_client() as trainer, console.inference() as inference:
        through_trainer = trainer.get("/adapters")
        direct = inference.get("/adapters")
    assert through_trainer.status_code == 200 and direct.status_code == 200
    assert through_trainer.json() == direct.json()
    assert f"{FIXED_ADAPTER}" in {a["name"] for a in direct.json()["adapters"]}


def test_a_wrong_inference_key_is_named_as_the_trainers_setting(console: Console, tmp_path) -> None:
    settings = TrainerSettings(data_dir=tmp_path, adapter_store=tmp_path / "adapters", run_worker=False,
                               api_keys=[TRAINER_KEY], inference_url=console.inference_url,
                               inference_api_key="not-the-key")
    with TestClient(create_app(settings)) as client:
        response = client.get("/adapters", headers={"Authorization": f"Bearer {TRAINER_KEY}"})
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert "answered 401" in message and "OCRTUNE_TRAINER_INFERENCE_API_KEY" in message
