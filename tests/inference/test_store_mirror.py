"""A remote (fsspec) adapter store mirrored to a local cache; memory:// stands in for s3://."""

from __future__ import annotations

import fsspec

from ocrtune_inference.adapters import RemoteStoreMirror, base_models_match
from ocrtune_shared.adapters import MANIFEST_FILE


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

    mirror = RemoteStoreMirror("memory://bucket/adapters", tmp_path / "mirror")
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
