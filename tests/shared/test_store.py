import json
import threading
from datetime import datetime, timezone

import pytest

from ocrtune_shared.adapters import AdapterManifest
from ocrtune_shared.store import AdapterNotFound, AdapterStore, AdapterStoreError


def _writer(payload: str):
    def write(folder):
        (folder / "adapter_config.json").write_text(json.dumps({"r": 16}))
        (folder / "adapter_model.safetensors").write_text(payload)
        return AdapterManifest(
            name="x", version=1, base_model="tiny", model_family="qwen2_vl", rank=16, alpha=16,
            target_modules=["q_proj"], created_at=datetime.now(timezone.utc),
        )
    return write


def test_publish_versions_increase_and_resolve(tmp_path):
    store = AdapterStore(tmp_path)
    first = store.publish("zh", _writer("a"))
    second = store.publish("zh", _writer("b"))
    assert (first.version, second.version) == (1, 2)
    assert store.resolve("zh") == second
    assert store.resolve("zh@1") == first
    assert store.verify(second).version == 2
    assert store.names() == ["zh"]
    assert not any((tmp_path / ".staging").iterdir())


def test_concurrent_publishers_never_share_a_version(tmp_path):
    store = AdapterStore(tmp_path)
    results = []
    threads = [threading.Thread(target=lambda: results.append(store.publish("zh", _writer("p")).version)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(1, 9))


def test_failed_write_leaves_nothing_visible(tmp_path):
    store = AdapterStore(tmp_path)

    def broken(folder):
        (folder / "adapter_model.safetensors").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.publish("zh", broken)
    assert store.versions("zh") == []
    assert not any((tmp_path / ".staging").iterdir())


def test_unknown_and_tampered_adapters(tmp_path):
    store = AdapterStore(tmp_path)
    with pytest.raises(AdapterNotFound, match="not in the store"):
        store.resolve("nope")
    stored = store.publish("zh", _writer("a"))
    with pytest.raises(AdapterNotFound, match="no version 7"):
        store.resolve("zh@7")
    (stored.path / "adapter_model.safetensors").write_text("tampered")
    with pytest.raises(AdapterStoreError, match="checksum"):
        store.verify(stored)
    with pytest.raises(ValueError):
        store.resolve("../etc")
