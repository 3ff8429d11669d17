"""API keys and settings, without an engine: the app's routes answer before the lifespan runs."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ocrtune_inference.main import create_app
from ocrtune_inference.settings import InferenceSettings


def test_api_keys_off_by_default(monkeypatch) -> None:
    monkeypatch.delenv("OCRTUNE_INFERENCE_API_KEYS", raising=False)
    assert InferenceSettings().api_keys == []


def test_settings_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("OCRTUNE_INFERENCE_API_KEYS", "k1, k2")
    monkeypatch.setenv("OCRTUNE_INFERENCE_MAX_LORAS", "3")
    monkeypatch.setenv("OCRTUNE_INFERENCE_ADAPTER_STORE", "s3://bucket/adapters")
    settings = InferenceSettings()
    assert settings.api_keys == ["k1", "k2"] and settings.max_loras == 3
    assert settings.adapter_store == "s3://bucket/adapters"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


def test_api_keys_required_when_set(tiny_model_dir) -> None:
    app = create_app(InferenceSettings(model=str(tiny_model_dir), api_keys=["secret"]))
    http = TestClient(app)  # not entered: no lifespan, so no engine
    response = http.get("/adapters")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    assert http.get("/adapters", headers={"Authorization": "Bearer wrong"}).status_code == 401
    authorized = http.get("/adapters", headers={"Authorization": "Bearer secret"})
    assert authorized.status_code == 503 and authorized.json()["error"]["code"] == "not_ready"
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 503
    # Prometheus scrapes without a key, as the k8s manifest's annotations ask it to.
    scraped = http.get("/metrics")
    assert scraped.status_code == 200 and "ocrtune" in scraped.text


def test_upload_limit_checked_before_reading(tiny_model_dir) -> None:
    http = TestClient(create_app(InferenceSettings(model=str(tiny_model_dir), max_upload_bytes=1000)))
    response = http.post("/ocr", files={"file": ("x.png", b"0" * 200_000, "image/png")})
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
