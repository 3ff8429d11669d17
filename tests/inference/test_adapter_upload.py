"""POST /adapters: a PEFT folder uploaded as an archive is imported, checked, published and served; every
refusal is a 4xx naming the problem, publishes nothing, and the service keeps serving."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from inference_http import FIXED_TEXTS, MAX_ADAPTER_BYTES, MAX_LORA_RANK, ocr
from safetensors.torch import load_file, save

from ocrtune_inference.adapter_upload import upload_adapter
from ocrtune_inference.main import create_app
from ocrtune_inference.settings import InferenceSettings
from ocrtune_shared.errors import ServiceError
from ocrtune_shared.store import STAGING_DIR, AdapterStore

CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"


def _files(folder: Path) -> dict[str, bytes]:
    return {CONFIG: (folder / CONFIG).read_bytes(), WEIGHTS: (folder / WEIGHTS).read_bytes()}


def _zip(files: dict[str, bytes], prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(prefix + name, data)
    return buffer.getvalue()


def _tar_gz(files: dict[str, bytes], prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _upload(client, archive: bytes, filename: str = "adapter.zip", **fields):
    return client.post("/adapters", files={"file": (filename, archive, "application/octet-stream")}, data=fields)


def test_uploaded_zip_and_tar_are_served(server, client, line_images) -> None:
    created = _upload(client, _zip(_files(server.adapter_dirs["a3"])), name="uploaded")
    assert created.status_code == 201, created.text
    info = created.json()
    assert (info["name"], info["version"], info["latest"], info["state"]) == ("uploaded", 1, True, "stored")
    assert info["base_model"] == str(server.model_dir) and info["rank"] == 16
    answer = ocr(client, line_images[2], "uploaded").json()
    assert (answer["adapter"], answer["text"]) == ("uploaded@1", FIXED_TEXTS["a3"])

    # A tar.gz of a folder (as `tar czf lora.tgz lora_model/` makes it), base model named by its folder name
    # the way a notebook user would name it: a new version, served as soon as it is answered.
    archive = _tar_gz(_files(server.adapter_dirs["a4"]), prefix="lora_model/")
    second = _upload(client, archive, "lora.tar.gz", name="uploaded", base_model=server.model_dir.name)
    assert second.status_code == 201, second.text
    assert (second.json()["version"], second.json()["base_model"]) == (2, server.model_dir.name)
    latest = ocr(client, line_images[3], "uploaded").json()
    assert (latest["adapter"], latest["text"]) == ("uploaded@2", FIXED_TEXTS["a4"])
    assert ocr(client, line_images[3], "uploaded@1").json()["text"] == FIXED_TEXTS["a3"]

    # A refused upload under a served name changes nothing: the name still resolves to the last good version.
    refused = _upload(client, _zip(_files(server.adapter_dirs["a0"])), name="uploaded", base_model="Qwen/Qwen2-VL-7B")
    assert refused.status_code == 409, refused.text
    assert AdapterStore(server.store_root).versions("uploaded") == [1, 2]
    assert ocr(client, line_images[3], "uploaded").json()["adapter"] == "uploaded@2"


def _with_config(folder: Path, **changes) -> dict[str, bytes]:
    config = json.loads((folder / CONFIG).read_text())
    config.update(changes)
    return {CONFIG: json.dumps(config).encode(), WEIGHTS: (folder / WEIGHTS).read_bytes()}


def _renamed_weights(folder: Path) -> dict[str, bytes]:
    tensors = load_file(folder / WEIGHTS)
    renamed = {k.replace("model.language_model.", "model.text_decoder."): v for k, v in tensors.items()}
    return {CONFIG: (folder / CONFIG).read_bytes(), WEIGHTS: save(renamed)}


def _bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(CONFIG, b"{}")
        zf.writestr(WEIGHTS, b"\0" * (MAX_ADAPTER_BYTES + 1))  # ~1 KB compressed
    return buffer.getvalue()


# (case id, archive from the a0 folder, form fields, status, code, words in the message)
REFUSALS = [
    ("not-an-archive", lambda a: b"just some text, not a zip or a tar", {}, 422, "adapter_invalid", "zip or tar"),
    ("dotdot-member", lambda a: _zip(_files(a), prefix="../escape/"), {}, 422, "adapter_invalid", ".."),
    ("no-config", lambda a: _zip({WEIGHTS: _files(a)[WEIGHTS]}), {}, 422, "adapter_invalid", CONFIG),
    ("no-weights", lambda a: _zip({CONFIG: _files(a)[CONFIG]}), {}, 422, "adapter_invalid", WEIGHTS),
    ("bad-config", lambda a: _zip({CONFIG: b"{not json", WEIGHTS: b""}), {}, 422, "adapter_invalid", CONFIG),
    ("bad-name", lambda a: _zip(_files(a)), {"name": "../etc"}, 422, "invalid_request", ".."),
    ("no-name", lambda a: _zip(_files(a)), {"name": None}, 422, "invalid_request", "name"),
    ("bad-base-model", lambda a: _zip(_files(a)), {"base_model": "m\x01"}, 422, "invalid_request", "base_model"),
    ("unknown-family", lambda a: _zip(_files(a)), {"model_family": "llama"}, 422, "invalid_request", "'llama'"),
    (
        "other-base",
        lambda a: _zip(_files(a)),
        {"base_model": "Qwen/Qwen2-VL-2B-Instruct"},
        409,
        "adapter_incompatible",
        "Qwen/Qwen2-VL-2B-Instruct",
    ),
    ("unmapped-keys", lambda a: _zip(_renamed_weights(a)), {}, 422, "adapter_incompatible", "model.text_decoder"),
    (
        "rank-too-high",
        lambda a: _zip(_with_config(a, r=MAX_LORA_RANK * 2)),
        {},
        422,
        "adapter_incompatible",
        f"rank {MAX_LORA_RANK * 2}",
    ),
    # Refused from its Content-Length by the guard, and (just over the limit, within the form overhead) when read.
    ("oversized-body", lambda a: b"\0" * (MAX_ADAPTER_BYTES + 100_000), {}, 413, "payload_too_large", "upload limit"),
    ("oversized-file", lambda a: b"\0" * (MAX_ADAPTER_BYTES + 1), {}, 413, "payload_too_large", "exceeds the limit"),
    ("unpacks-too-large", lambda a: _bomb(), {}, 413, "payload_too_large", "unpacks to more than"),
]


@pytest.mark.parametrize(
    ("archive", "fields", "status", "code", "says"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_upload_refused(server, client, line_images, base_answers, archive, fields, status, code, says) -> None:
    name = "refused-upload"
    form = {"name": name, **fields}
    form = {k: v for k, v in form.items() if v is not None}
    response = _upload(client, archive(server.adapter_dirs["a0"]), **form)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and says in error["message"], error
    # Nothing published, nothing left behind, and the service keeps serving.
    store = AdapterStore(server.store_root)
    assert store.versions(name) == []
    staging = server.store_root / STAGING_DIR
    assert not staging.exists() or not any(staging.iterdir())
    assert ocr(client, line_images[0], name).status_code == 404
    assert ocr(client, line_images[0]).json()["text"] == base_answers[0]
    assert ocr(client, line_images[0], "a2").json()["text"] == FIXED_TEXTS["a2"]


# --- without an engine ---------------------------------------------------------------------


def test_upload_needs_the_api_key_and_fits_its_own_limit(tiny_model_dir) -> None:
    keyed = TestClient(create_app(InferenceSettings(model=str(tiny_model_dir), api_keys=["secret"])))
    response = keyed.post("/adapters", files={"file": ("a.zip", b"PK", "application/zip")}, data={"name": "x"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"

    small = TestClient(
        create_app(InferenceSettings(model=str(tiny_model_dir), max_upload_bytes=10**6, max_adapter_bytes=1000))
    )
    response = small.post("/adapters", files={"file": ("a.zip", b"0" * 200_000, "application/zip")}, data={"name": "x"})
    assert response.status_code == 413 and "adapter upload limit of 1000 bytes" in response.json()["error"]["message"]
    # An image of the same size is within the image limit: the route answers (503: no engine here), not the guard.
    assert small.post("/ocr", files={"file": ("x.png", b"0" * 200_000, "image/png")}).status_code == 503


def test_remote_store_refuses_uploads() -> None:
    catalog = SimpleNamespace(mirror=object())
    with pytest.raises(ServiceError) as raised:
        upload_adapter(catalog, io.BytesIO(b""), name="x", base_model=None, model_family=None, max_bytes=100)
    assert raised.value.status == 409 and "local store" in raised.value.body.message
