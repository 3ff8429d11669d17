"""The playground's files (/ui/) are served without a key while every data route keeps asking for one."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ocrtune_inference.main import create_app
from ocrtune_inference.settings import InferenceSettings


def test_playground_files_are_open_and_data_stays_keyed(tiny_model_dir) -> None:
    http = TestClient(create_app(InferenceSettings(model=str(tiny_model_dir), api_keys=["secret"])))  # no engine
    page = http.get("/ui/")
    assert page.status_code == 200 and 'src="playground.js"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in ("playground.js", "common/api.js", "common/textdiff.js", "common/console.css"):
        assert http.get(f"/ui/{asset}").status_code == 200, asset
    assert http.get("/ui", follow_redirects=False).status_code == 307
    assert http.get("/ui/missing.js").status_code == 404
    # The calls the page makes carry the user's key; without it they are refused as before.
    for method, path in (("GET", "/adapters"), ("POST", "/ocr"), ("GET", "/v1/models")):
        assert http.request(method, path).status_code == 401, path
    # A path that only starts like the console's is not opened by it.
    assert http.get("/uix").status_code == 401
