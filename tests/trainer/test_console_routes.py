"""The trainer's web console: its static files (open), and the two routes it reads (behind the key).

In-process, no worker. The adapters route against the real inference service is in
tests/ui/test_served_adapters.py; here, the answers it gives when that service is not
configured, not there, or answers with something else than its adapter list.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ocrtune_shared.console import recipe_defaults
from ocrtune_shared.finetune import FinetuneRequest
from ocrtune_trainer.main import create_app
from ocrtune_trainer.settings import TrainerSettings

from .conftest import free_port

KEY = "console-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _client(tmp_path: Path, **overrides: object) -> TestClient:
    settings = TrainerSettings(data_dir=tmp_path, adapter_store=tmp_path / "adapters", run_worker=False,
                               api_keys=[KEY], **overrides)
    return TestClient(create_app(settings))


def test_the_dashboard_files_need_no_key_and_hold_no_data(tmp_path: Path) -> None:
    with _client(tmp_path) as client:
        page = client.get("/ui/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'src="dashboard.js"' in page.text
        # Scripts only from the service itself: what keeps the key in sessionStorage out of other scripts' reach.
        assert "script-src 'self'" in page.headers["content-security-policy"]
        for asset, kind in (("dashboard.js", "javascript"), ("common/api.js", "javascript"),
                            ("common/charts.js", "javascript"), ("common/console.css", "css")):
            response = client.get(f"/ui/{asset}")
            assert response.status_code == 200 and kind in response.headers["content-type"], asset
        assert client.get("/ui", follow_redirects=False).headers["location"].endswith("/ui/")
        missing = client.get("/ui/nothing-here.js")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "invalid_request"
        # Every data route stays behind the key.
        for path in ("/console", "/adapters", "/finetune"):
            assert client.get(path).status_code == 401, path


def test_console_shows_the_defaults_a_job_really_gets(tmp_path: Path) -> None:
    with _client(tmp_path, base_model="/models/base", inference_url="http://inference:8000") as client:
        config = client.get("/console", headers=AUTH).json()
        job = client.post("/finetune", json={"adapter_name": "defaults", "train": {"uri": "s3://b/t.parquet"}},
                          headers=AUTH).json()
    assert config["recipe"] == recipe_defaults().model_dump(mode="json")
    request = job["request"]
    assert request["hyperparameters"] == config["recipe"]["hyperparameters"]
    for name in ("prompt", "eval_fraction", "max_eval_samples"):
        assert request[name] == config["recipe"][name] == FinetuneRequest.model_fields[name].default
    assert config["base_model"] == request["base_model"] == "/models/base"
    assert config["playground_url"] == "http://inference:8000/ui/"
    assert config["max_dataset_upload_bytes"] == TrainerSettings.model_fields["max_dataset_upload_bytes"].default


def test_playground_link_uses_the_public_url_when_set(tmp_path: Path) -> None:
    with _client(tmp_path, inference_url="http://inference:8000",
                 inference_public_url="https://ocr.example.org/") as client:
        assert client.get("/console", headers=AUTH).json()["playground_url"] == "https://ocr.example.org/ui/"
    with _client(tmp_path / "none") as client:
        assert client.get("/console", headers=AUTH).json()["playground_url"] is None


def test_adapters_without_an_inference_service_configured(tmp_path: Path) -> None:
    with _client(tmp_path) as client:
        response = client.get("/adapters", headers=AUTH)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_ready" and "OCRTUNE_TRAINER_INFERENCE_URL" in error["message"]


def test_adapters_when_the_inference_service_is_not_there(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with _client(tmp_path, inference_url=url) as client:
        response = client.get("/adapters", headers=AUTH)
    assert response.status_code == 503
    assert "cannot be reached" in response.json()["error"]["message"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server over a folder: answers GET /adapters with whatever file is there (404 without one)."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()


def test_adapters_when_the_inference_url_answers_an_error(tmp_path: Path, file_server) -> None:
    url, _ = file_server
    with _client(tmp_path, inference_url=url) as client:
        response = client.get("/adapters", headers=AUTH)
    assert response.status_code == 502
    assert "answered 404" in response.json()["error"]["message"]


def test_adapters_when_the_inference_url_answers_something_else(tmp_path: Path, file_server) -> None:
    url, folder = file_server
    (folder / "adapters").write_text("<html>a login page</html>")
    with _client(tmp_path, inference_url=url) as client:
        response = client.get("/adapters", headers=AUTH)
    assert response.status_code == 502
    assert "not readable" in response.json()["error"]["message"]
