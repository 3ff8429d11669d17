"""``upload_adapter`` and ``ocrtune adapters upload`` on the wire, against a mock transport (no server)."""

from __future__ import annotations

import io
import json
import zipfile
from email.parser import BytesParser
from email.policy import HTTP

import httpx
import pytest

from ocrtune_client import OCRTuneClient, OCRTuneError, cli, cli_ocr

INFO = {"name": "notebook", "version": 3, "latest": True, "state": "stored", "base_model": "m", "rank": 8}


def _parts(request: httpx.Request) -> dict[str, tuple[str | None, bytes]]:
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.content)
    return {
        p.get_param("name", header="content-disposition"): (p.get_filename(), p.get_payload(decode=True))
        for p in message.iter_parts()
    }


def _peft_folder(tmp_path):
    folder = tmp_path / "lora_model"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    (folder / "tokenizer.json").write_text("{}")  # saved beside a notebook's adapter; not sent
    return folder


def test_folder_is_zipped_with_the_adapter_files_only(tmp_path) -> None:
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["method"], seen["path"], seen["parts"] = request.method, request.url.path, _parts(request)
        return httpx.Response(201, json=INFO)

    with OCRTuneClient("http://svc", transport=httpx.MockTransport(handler)) as client:
        info = client.upload_adapter(_peft_folder(tmp_path), name="notebook", base_model="deepseek-ai/DeepSeek-OCR")
    assert (info.name, info.version) == ("notebook", 3)
    assert (seen["method"], seen["path"]) == ("POST", "/adapters")
    parts = seen["parts"]
    assert parts["name"][1] == b"notebook" and parts["base_model"][1] == b"deepseek-ai/DeepSeek-OCR"
    assert "model_family" not in parts
    filename, archive = parts["file"]
    assert filename == "lora_model.zip"
    assert sorted(zipfile.ZipFile(io.BytesIO(archive)).namelist()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]


def test_archive_is_sent_as_is_and_errors_keep_the_servers_words(tmp_path) -> None:
    archive = tmp_path / "lora.tar.gz"
    archive.write_bytes(b"\x1f\x8b tar bytes")
    body = {"error": {"code": "adapter_incompatible", "message": "adapter x (upload) has LoRA rank 64", "where": "x"}}

    def handler(request: httpx.Request) -> httpx.Response:
        assert _parts(request)["file"] == ("lora.tar.gz", b"\x1f\x8b tar bytes")
        return httpx.Response(422, json=body)

    with OCRTuneClient("http://svc", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(OCRTuneError) as raised:
            client.upload_adapter(archive, name="x")
    assert raised.value.status == 422 and "rank 64" in raised.value.message


def test_refused_before_sending(tmp_path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing should be sent")

    with OCRTuneClient("http://svc", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ValueError, match="not a PEFT adapter folder"):
            client.upload_adapter(tmp_path, name="x")
        with pytest.raises(ValueError):
            client.upload_adapter(_peft_folder(tmp_path), name="../x")


def test_cli_upload(tmp_path, monkeypatch, capsys) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json=INFO)

    real = OCRTuneClient
    monkeypatch.setattr(cli_ocr, "OCRTuneClient", lambda *a, **k: real(*a, **k, transport=httpx.MockTransport(handler)))
    folder = _peft_folder(tmp_path)
    assert cli.run(["adapters", "upload", str(folder), "--name", "notebook", "--base-model", "m"]) == 0
    assert "published notebook@3" in capsys.readouterr().out
    assert cli.run(["adapters", "upload", str(tmp_path / "missing"), "--name", "notebook"]) == cli.EXIT_USAGE
    with pytest.raises(SystemExit):
        cli.run(["adapters", "upload", str(folder)])  # no --name
