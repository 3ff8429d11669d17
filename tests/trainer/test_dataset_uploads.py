"""POST /datasets: a dataset file uploaded over HTTP, stored by the trainer, accepted by POST /finetune.

In-process (no worker): every refusal is the shared error body with a 4xx status, and a
refused upload leaves nothing behind in the uploads folder.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ocrtune_trainer.main import create_app
from ocrtune_trainer.settings import TrainerSettings

KEY = "upload-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def settings(tmp_path: Path) -> TrainerSettings:
    # No data roots: uploads are the only local datasets this trainer takes.
    return TrainerSettings(data_dir=tmp_path / "trainer", adapter_store=tmp_path / "adapters", run_worker=False,
                           api_keys=[KEY], max_dataset_upload_bytes=200_000, max_extract_bytes=400_000)


@pytest.fixture
def client(settings: TrainerSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as http:
        yield http


@pytest.fixture(scope="module")
def parquet_bytes(tmp_path_factory: pytest.TempPathFactory, synthetic_samples: list) -> bytes:
    from ocrtune_devkit.synthetic import write_parquet

    return write_parquet(synthetic_samples[:4], tmp_path_factory.mktemp("p") / "train.parquet").read_bytes()


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory, synthetic_samples: list) -> Path:
    from ocrtune_devkit.synthetic import write_image_folder

    return write_image_folder(synthetic_samples[:4], tmp_path_factory.mktemp("f") / "receipts")


def _zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, Path(folder.name) / path.relative_to(folder))
    return buffer.getvalue()


def _post(client: TestClient, name: str, data: bytes, **kwargs: object):  # type: ignore[no-untyped-def]
    return client.post("/datasets", files={"file": (name, data, "application/octet-stream")}, headers=AUTH, **kwargs)


def _error(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    return error


def _left_behind(settings: TrainerSettings) -> list[Path]:
    return list(settings.uploads_dir.iterdir()) if settings.uploads_dir.exists() else []


def test_a_parquet_upload_gets_a_uri_that_a_job_accepts(client: TestClient, settings, parquet_bytes: bytes) -> None:
    response = _post(client, "train.parquet", parquet_bytes)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["format"] == "parquet" and body["rows"] == 4 and body["filename"] == "train.parquet"
    assert body["bytes"] == len(parquet_bytes) and body["sha256"] == hashlib.sha256(parquet_bytes).hexdigest()
    stored = Path(body["uri"])
    assert stored.read_bytes() == parquet_bytes and stored.is_relative_to(settings.uploads_dir)

    job = client.post("/finetune", json={"adapter_name": "uploaded", "train": {"uri": body["uri"]}}, headers=AUTH)
    assert job.status_code == 202, job.text
    # Other local paths are still refused (no data roots), and the refusal points at the upload.
    elsewhere = client.post("/finetune", json={"adapter_name": "x", "train": {"uri": str(stored.parent.parent.parent)}},
                            headers=AUTH)
    assert "POST /datasets" in _error(elsewhere, 422, "uri_not_allowed")["message"]


def test_an_archive_is_unpacked_once_into_a_dataset_folder(client: TestClient, image_folder: Path) -> None:
    for name, data in (
        ("receipts.zip", _zip(image_folder)),
        ("receipts.tar.gz", _targz(image_folder)),
    ):
        response = _post(client, name, data)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["format"] == "image_folder" and body["rows"] is None
        folder = Path(body["uri"])
        assert (folder / "labels.tsv").is_file() and len(list((folder / "images").iterdir())) == 4
        assert not (folder.parent.parent / name).exists()  # the archive itself is not kept
        job = client.post("/finetune", json={"adapter_name": "zipped", "train": {"uri": body["uri"]}}, headers=AUTH)
        assert job.status_code == 202, job.text


def _targz(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        tf.add(folder, arcname=folder.name)
    return buffer.getvalue()


def test_the_api_key_is_required(client: TestClient, parquet_bytes: bytes) -> None:
    response = client.post("/datasets", files={"file": ("train.parquet", parquet_bytes)})
    _error(response, 401, "unauthorized")


def test_a_body_that_is_not_multipart_is_refused(client: TestClient) -> None:
    response = client.post("/datasets", json={"uri": "/data/train.parquet"}, headers=AUTH)
    assert "multipart/form-data" in _error(response, 415, "unsupported_media_type")["message"]


def test_a_malformed_multipart_body_is_refused(client: TestClient, settings) -> None:
    boundary = "b0undary"
    response = client.post("/datasets", content=f"--{boundary}\r\n-1.5--{boundary}--\r\n".encode(),
                           headers={**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    _error(response, 400, "invalid_request")
    assert _left_behind(settings) == []


def test_a_form_without_the_file_is_refused(client: TestClient) -> None:
    response = client.post("/datasets", data={"name": "train"}, files={"other": ("x.bin", b"x")}, headers=AUTH)
    assert _error(response, 422, "invalid_request")["where"] == "file"


@pytest.mark.parametrize(
    ("name", "data", "said"),
    [
        ("notes.txt", b"not a dataset", "not a dataset file the trainer takes"),
        ("train.parquet", b"\x89PNG\r\n\x1a\n" + b"0" * 64, "not a parquet file"),
        ("receipts.zip", b"PK but not really a zip archive", "not a zip or tar archive"),
    ],
)
def test_a_file_of_another_type_is_refused(client: TestClient, settings, name: str, data: bytes, said: str) -> None:
    error = _error(_post(client, name, data), 415, "unsupported_media_type")
    assert said in error["message"] and error["where"] == "file"
    assert _left_behind(settings) == []


def test_a_damaged_parquet_file_is_refused(client: TestClient, settings, parquet_bytes: bytes) -> None:
    damaged = parquet_bytes[:8] + b"\0" * 64 + parquet_bytes[-4:]  # both magic numbers, no footer
    assert "not a readable parquet file" in _error(_post(client, "train.parquet", damaged), 422, "dataset_invalid")["message"]
    assert _left_behind(settings) == []


def test_an_archive_escaping_its_folder_is_refused(client: TestClient, settings, synthetic_samples: list) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("data/labels.tsv", "images/0.png\t一二\n")
        zf.writestr("data/images/0.png", synthetic_samples[0].png)
        zf.writestr("../../escaped.txt", "gotcha")
    error = _error(_post(client, "evil.zip", buffer.getvalue()), 422, "dataset_invalid")
    assert "outside the archive folder" in error["message"]
    assert _left_behind(settings) == [] and not (settings.data_dir / "escaped.txt").exists()


def test_an_archive_without_a_dataset_is_refused(client: TestClient, settings) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("notes/readme.md", "no images, no labels")
    error = _error(_post(client, "notes.zip", buffer.getvalue()), 422, "dataset_invalid")
    assert "no dataset found" in error["message"] and error["where"] == "notes.zip"
    assert _left_behind(settings) == []


def test_an_upload_over_the_limit_is_refused_from_its_length(client: TestClient, settings) -> None:
    response = _post(client, "big.parquet", b"PAR1" + b"0" * 300_000 + b"PAR1")
    error = _error(response, 413, "payload_too_large")
    assert "200000 bytes" in error["message"]
    assert _left_behind(settings) == []


def test_an_upload_over_the_limit_without_a_length_is_cut_off(settings: TrainerSettings) -> None:
    """Sent chunked (no Content-Length): counted as it arrives and refused at the limit, not read whole.

    Driven through the ASGI interface as a server drives it, one body chunk per receive(),
    so the test sees how much of the body the app asked for.
    """
    import anyio

    boundary = "ocrtuneboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.parquet\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    chunks = [head] + [b"0" * 65536] * 100  # 6.4 MB if it were all read
    pulled = 0
    answer: dict = {}

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] = answer.get("body", b"") + message.get("body", b"")

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/datasets", "raw_path": b"/datasets", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {KEY}".encode()),
                    (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
                    (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80),
    }
    anyio.run(create_app(settings), scope, receive, send)
    assert answer["status"] == 413 and b"payload_too_large" in answer["body"]
    limit_chunks = (settings.max_dataset_upload_bytes + 64 * 1024) // 65536 + 2
    assert pulled <= limit_chunks < len(chunks)
    assert _left_behind(settings) == []


def test_a_file_just_over_the_limit_is_refused(client: TestClient, settings) -> None:
    # Within the form's allowance for framing, so only the file's own size catches it.
    error = _error(_post(client, "train.parquet", b"PAR1" + b"0" * 200_100 + b"PAR1"), 413, "payload_too_large")
    assert error["where"] == "file"
    assert _left_behind(settings) == []


def test_an_archive_unpacking_beyond_the_limit_is_refused(client: TestClient, settings) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data/labels.tsv", "a.png\t一\n" * 50_000)  # ~0.5 MB of text, a few KB zipped
    assert len(buffer.getvalue()) < settings.max_dataset_upload_bytes
    error = _error(_post(client, "bomb.zip", buffer.getvalue()), 413, "payload_too_large")
    assert "400000 bytes" in error["message"]
    assert _left_behind(settings) == []


def test_folders_in_the_file_name_are_dropped(client: TestClient, parquet_bytes: bytes) -> None:
    response = _post(client, "../../C:\\Users\\me\\train set.parquet", parquet_bytes)
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == "train_set.parquet"
