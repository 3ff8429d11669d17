"""A remote (fsspec) adapter store mirrored to a local cache; memory:// stands in for s3://."""

from __future__ import annotations

import fsspec

from ocrtune_inference.adapter_checks import base_models_match
from ocrtune_shared.adapters import MANIFEST_FILE
from ocrtune_shared.store import StoreMirror


def test_remote_versions_mirrored_once_complete(tmp_path, trained_adapters, tiny_model_dir) -> None:
    from ocrtune_devkit.adapters import publish_tiny_adapter
    from ocrtune_shared.store import AdapterStore

    local_origin = AdapterStore(tmp_path / "origin")
    published = publish_tiny_adapter(local_origin, "remote-one", trained_adapters["a0"], str(tiny_model_dir))
    fs = fsspec.filesystem("memory")
    for file in published.path.iterdir():
        fs.pipe(f"/bucket/adapters/remote-one/1/{file.name}", file.read_bytes())
    # Version 2 is mid-upload: no manifest yet, so it must not appear.
    fs.pipe("/bucket/adapters/remote-one/2/adapter_config.json", b"{}")

    mirror = StoreMirror("memory://bucket/adapters", tmp_path / "mirror")
    assert mirror.names() == ["remote-one"]
    mirror.sync("remote-one")
    stored = mirror.local.resolve("remote-one")
    assert stored.version == 1
    assert mirror.local.verify(stored).name == "remote-one"

    fs.pipe("/bucket/adapters/remote-one/2/" + MANIFEST_FILE, (published.path / MANIFEST_FILE).read_bytes())
    mirror.sync("remote-one")
    assert mirror.local.versions("remote-one") == [1, 2]


def test_base_model_match_rules(tmp_path) -> None:
    served = tmp_path / "tiny-model"
    served.mkdir()
    assert base_models_match(str(served), str(served), served)
    assert base_models_match("/elsewhere/tiny-model", str(served), served)
    assert base_models_match("org/DeepSeek-OCR-2", "org/DeepSeek-OCR-2", served)
    assert not base_models_match("Qwen/Qwen2-VL-2B-Instruct", str(served), served)


def test_trainer_upload_to_s3_is_mirrored_by_inference(tmp_path, moto_s3, monkeypatch, trained_adapters, tiny_model_dir):
    """The S3 store end to end on a local S3 server: the trainer's upload, then the inference mirror."""
    import boto3

    from ocrtune_devkit.adapters import publish_tiny_adapter
    from ocrtune_shared.store import AdapterStore, RemoteAdapterStore

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto_s3}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=moto_s3).create_bucket(Bucket="adapters-bucket")
    outbox = AdapterStore(tmp_path / "outbox")
    remote = RemoteAdapterStore("s3://adapters-bucket/store")

    first = publish_tiny_adapter(outbox, "s3-one", trained_adapters["a0"], str(tiny_model_dir))
    assert remote.upload(first) == 1
    second = publish_tiny_adapter(outbox, "s3-one", trained_adapters["a1"], str(tiny_model_dir))
    assert remote.upload(second) == 2 and remote.versions("s3-one") == [1, 2]

    import fsspec

    fsspec.filesystem("s3").invalidate_cache()
    mirror = StoreMirror("s3://adapters-bucket/store", tmp_path / "mirror")
    assert mirror.names() == ["s3-one"]
    mirror.sync("s3-one")
    assert mirror.local.versions("s3-one") == [1, 2]
    mirrored = mirror.local.resolve("s3-one@2")
    manifest = mirror.local.verify(mirrored)  # every file's checksum, as uploaded
    assert manifest.version == 2 and manifest.files == second.manifest().files
