"""Dataset URIs and layouts, read and validated in-process (the HTTP tests submit the same ones)."""

from __future__ import annotations

import pytest

from ocrtune_shared.errors import ErrorCode
from ocrtune_shared.finetune import DatasetSpec, FinetuneRequest
from ocrtune_trainer.datasets import DatasetError, check_uri_allowed, fetch, read_rows
from ocrtune_trainer.settings import TrainerSettings
from ocrtune_trainer.validation import check_rows, fingerprint, load_spec, prepare, read_prepared

from .conftest import HF_REPO, S3_BUCKET, S3_ENV, DataLayouts


@pytest.fixture
def settings(tmp_path, data_layouts: DataLayouts) -> TrainerSettings:
    return TrainerSettings(data_dir=tmp_path / "state", data_roots=[data_layouts.root])


@pytest.fixture
def private_url_settings(settings: TrainerSettings) -> TrainerSettings:
    """The test HTTP servers listen on 127.0.0.1, which dataset URIs may reach only when this is set."""
    return settings.model_copy(update={"allow_private_urls": True})


def _texts(spec: DatasetSpec, settings: TrainerSettings, tmp_path) -> list[str]:
    rows = check_rows(load_spec(spec, tmp_path / "work", settings), "train")
    return [row.text for row in rows]


@pytest.mark.parametrize(
    "layout, columns",
    [
        ("parquet", {}),
        ("image_folder", {}),
        ("hf_disk", {}),
        ("jsonl", {"image_path": "file", "text": "label"}),
        ("csv", {"image_path": "path"}),
        ("zip", {}),
        ("tar", {}),
    ],
)
def test_every_local_layout_reads_the_same_rows(layout, columns, data_layouts, settings, tmp_path) -> None:
    spec = DatasetSpec(uri=str(data_layouts.paths[layout]), columns=columns)
    assert _texts(spec, settings, tmp_path) == [s.text for s in data_layouts.samples]


def test_file_uri_and_max_samples(data_layouts, settings, tmp_path) -> None:
    spec = DatasetSpec(uri=data_layouts.paths["parquet"].as_uri(), max_samples=3)
    assert _texts(spec, settings, tmp_path) == [s.text for s in data_layouts.samples[:3]]


def test_hub_dataset_from_the_local_cache(hf_cache, data_layouts, settings, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    expected = [s.text for s in data_layouts.samples]
    # Whole repo: the split picks data/train-*.parquet, not data/test-*.parquet.
    assert _texts(DatasetSpec(uri=f"hf://datasets/{HF_REPO}"), settings, tmp_path) == expected
    one_file = DatasetSpec(uri=f"hf://datasets/{HF_REPO}/data/test-00000-of-00001.parquet")
    assert _texts(one_file, settings, tmp_path / "b") == expected
    with pytest.raises(DatasetError) as missing:
        fetch("hf://datasets/ocrtune/not-there", tmp_path / "c", settings)
    assert missing.value.code is ErrorCode.dataset_unreachable and "ocrtune/not-there" in missing.value.message


def test_s3_file_and_folder_through_moto(s3_server, data_layouts, tmp_path, monkeypatch) -> None:
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    settings = TrainerSettings(data_dir=tmp_path, s3_endpoint_url=s3_server)
    expected = [s.text for s in data_layouts.samples]
    assert _texts(DatasetSpec(uri=f"s3://{S3_BUCKET}/zh/train.parquet"), settings, tmp_path / "a") == expected
    assert _texts(DatasetSpec(uri=f"s3://{S3_BUCKET}/folder"), settings, tmp_path / "b") == expected
    with pytest.raises(DatasetError, match="does not exist"):
        fetch(f"s3://{S3_BUCKET}/nope.parquet", tmp_path / "c", settings)


def test_https_download_and_404(http_server, data_layouts, private_url_settings, tmp_path) -> None:
    settings = private_url_settings
    expected = [s.text for s in data_layouts.samples]
    assert _texts(DatasetSpec(uri=f"{http_server}/parquet/train.parquet"), settings, tmp_path / "a") == expected
    assert _texts(DatasetSpec(uri=f"{http_server}/image_folder.zip"), settings, tmp_path / "b") == expected
    with pytest.raises(DatasetError) as missing:
        fetch(f"{http_server}/missing.parquet", tmp_path / "c", settings)
    assert missing.value.code is ErrorCode.dataset_unreachable and "404" in missing.value.message


def test_unreachable_host(private_url_settings, tmp_path) -> None:
    from .conftest import free_port

    with pytest.raises(DatasetError) as err:
        fetch(f"http://127.0.0.1:{free_port()}/train.parquet", tmp_path, private_url_settings)
    assert err.value.code is ErrorCode.dataset_unreachable and "cannot reach 127.0.0.1" in err.value.message


@pytest.mark.parametrize(
    "uri",
    [
        "http://169.254.169.254/latest/meta-data/",
        "https://[fe80::1]/x.parquet",
        "http://[::ffff:169.254.169.254]/x",
        "https://[fd00:ec2::254]/x",
    ],
)
def test_metadata_and_link_local_addresses_are_refused(uri, settings, tmp_path) -> None:
    with pytest.raises(DatasetError) as err:
        check_uri_allowed(uri, settings)
    assert err.value.code is ErrorCode.uri_not_allowed
    with pytest.raises(DatasetError):
        fetch(uri, tmp_path, settings)


def test_redirect_to_metadata_is_refused(private_url_settings, tmp_path) -> None:
    import http.server
    import threading

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/iam")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(DatasetError) as err:
            fetch(f"http://127.0.0.1:{server.server_address[1]}/data.parquet", tmp_path, private_url_settings)
        assert err.value.code is ErrorCode.uri_not_allowed and "169.254.169.254" in err.value.message
    finally:
        server.shutdown()


@pytest.mark.parametrize("host", ["127.0.0.1", "10.0.0.5", "[::1]", "192.168.0.10"])
def test_private_addresses_are_refused_at_submit_unless_allowed(host, settings, private_url_settings) -> None:
    uri = f"http://{host}:8080/train.parquet"
    with pytest.raises(DatasetError) as err:
        check_uri_allowed(uri, settings)
    assert err.value.code is ErrorCode.uri_not_allowed and err.value.where == uri
    assert "not a public address" in err.value.message
    assert "set OCRTUNE_TRAINER_ALLOW_PRIVATE_URLS=true" in err.value.message
    check_uri_allowed(uri, private_url_settings)  # allowed: the worker fetches it


def test_a_name_resolving_to_loopback_is_refused_when_fetched(http_server, data_layouts, settings,
                                                              private_url_settings, tmp_path) -> None:
    uri = http_server.replace("127.0.0.1", "localhost") + "/parquet/train.parquet"
    check_uri_allowed(uri, settings)  # a name: resolved by the worker, not at submit time
    with pytest.raises(DatasetError) as err:
        fetch(uri, tmp_path / "a", settings)
    assert err.value.code is ErrorCode.uri_not_allowed
    assert "localhost resolves to 127.0.0.1; 127.0.0.1 is a loopback address" in err.value.message
    expected = [s.text for s in data_layouts.samples]
    assert _texts(DatasetSpec(uri=uri), private_url_settings, tmp_path / "b") == expected


def test_a_download_above_the_limit_is_stopped(http_server, private_url_settings, tmp_path) -> None:
    small = private_url_settings.model_copy(update={"max_download_bytes": 1000})
    uri = f"{http_server}/parquet/train.parquet"
    with pytest.raises(DatasetError) as err:
        fetch(uri, tmp_path, small)
    assert err.value.code is ErrorCode.dataset_invalid and err.value.where == uri
    assert err.value.message == "the download is larger than the limit of 1000 bytes"
    assert not list((tmp_path / "downloads").iterdir())  # the partial file is gone


def test_local_paths_outside_the_roots_are_refused(tmp_path, settings) -> None:
    outside = tmp_path / "elsewhere.parquet"
    outside.write_bytes(b"x")
    for uri in (str(outside), outside.as_uri(), f"{settings.data_roots[0]}/../{outside.name}", "relative/path"):
        with pytest.raises(DatasetError) as err:
            check_uri_allowed(uri, settings)
        assert err.value.code is ErrorCode.uri_not_allowed, uri
    with pytest.raises(DatasetError, match="no data roots"):
        check_uri_allowed(str(outside), TrainerSettings(data_dir=tmp_path))


def test_missing_local_path_is_a_404(data_layouts, settings, tmp_path) -> None:
    with pytest.raises(DatasetError) as err:
        fetch(str(data_layouts.root / "nope.parquet"), tmp_path, settings)
    assert err.value.code is ErrorCode.dataset_unreachable and "does not exist" in err.value.message


def test_missing_column_names_the_file_and_the_columns(data_layouts, settings, tmp_path) -> None:
    spec = DatasetSpec(uri=str(data_layouts.paths["parquet"]), columns={"text": "transcription"})
    with pytest.raises(DatasetError) as err:
        load_spec(spec, tmp_path, settings)
    assert err.value.where == "train.parquet"
    assert "'transcription' is missing" in err.value.message and "'text'" in err.value.message


def test_corrupt_image_row_is_named(data_layouts, settings, tmp_path) -> None:
    with pytest.raises(DatasetError) as err:
        check_rows(load_spec(DatasetSpec(uri=str(data_layouts.paths["corrupt_image"])), tmp_path, settings), "train")
    assert err.value.code is ErrorCode.dataset_invalid
    assert err.value.where == "labels.tsv line 3"
    assert "images/000002.png" in err.value.message and "1 unusable row(s) of 4" in err.value.message


def test_empty_text_row_is_named(data_layouts, settings, tmp_path) -> None:
    with pytest.raises(DatasetError) as err:
        check_rows(load_spec(DatasetSpec(uri=str(data_layouts.paths["empty_text"])), tmp_path, settings), "train")
    assert err.value.where == "train.parquet row 3" and "empty text" in err.value.message


@pytest.mark.parametrize("layout", ["evil_zip", "evil_tar"])
def test_archives_with_parent_paths_are_refused(layout, data_layouts, settings, tmp_path) -> None:
    with pytest.raises(DatasetError) as err:
        fetch(str(data_layouts.paths[layout]), tmp_path / "work", settings)
    assert err.value.code is ErrorCode.dataset_invalid and "points outside the archive" in err.value.message
    assert err.value.where == data_layouts.paths[layout].name
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "outside.png").exists()


def test_prepare_holds_out_eval_rows_deterministically(data_layouts, settings, tmp_path) -> None:
    request = FinetuneRequest(adapter_name="x", train={"uri": str(data_layouts.paths["parquet"])}, eval_fraction=0.25)
    first = prepare(request, tmp_path / "a", settings)
    second = prepare(request, tmp_path / "b", settings)
    assert (first.train_rows, first.eval_rows) == (second.train_rows, second.eval_rows) == (6, 2)
    assert fingerprint(read_prepared(tmp_path / "a" / "train.parquet")) == fingerprint(
        read_prepared(tmp_path / "b" / "train.parquet"))


def test_read_rows_detects_format_of_a_bare_folder(data_layouts) -> None:
    raw = read_rows(data_layouts.paths["hf_disk"], DatasetSpec(uri="x"), 100)
    assert len(raw.rows) == 8 and not raw.problems
