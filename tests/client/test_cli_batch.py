"""``ocrtune ocr`` on many files (folders, globs, -o, a progress bar), --stream, --resolution, and the
``ocrtune finetune`` flags --eval and --target-modules, against the services the demo leaves running.

Every command runs as the console script in a subprocess, as a user runs it; texts written
are compared with what the Python client gets for the same file from the same service.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from test_client_cli import OCRTUNE, assert_clean_failure, cli

from ocrtune_client import OCRTuneClient
from ocrtune_client.cli import build_parser
from ocrtune_client.cli_ocr import ocr_options
from ocrtune_client.operations import ocr as ocr_operation
from ocrtune_devkit.processes import free_port
from ocrtune_shared.jobs import Job, JobState
from ocrtune_shared.ocr import OCROptions, OCRResponse, OCRStreamEvent, ResolutionMode


@pytest.fixture(scope="module")
def line_pngs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three synthetic line images, as PNG files."""
    from ocrtune_devkit.synthetic import make_samples

    folder = tmp_path_factory.mktemp("lines")
    paths = []
    for index, sample in enumerate(make_samples(3, seed=2718)):
        paths.append(folder / f"line-{index}.png")
        paths[-1].write_bytes(sample.png)
    return paths


def _two_page_pdf(png: Path, target: Path) -> Path:
    page = Image.open(png).convert("RGB")
    page.save(target, format="PDF", save_all=True, append_images=[page.copy()], resolution=72)
    return target


def _service_text(services, path: Path, **options: object) -> str:
    with OCRTuneClient(services.inference_url, services.trainer_url) as client:
        return client.ocr(path, options=OCROptions(max_tokens=512, **options)).text


# --- batches -------------------------------------------------------------------------------------
def test_a_folder_gives_one_text_per_file_mirroring_names(services, line_pngs, tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    (scans / "sub").mkdir(parents=True)
    shutil.copy(line_pngs[0], scans / "a.png")
    shutil.copy(line_pngs[1], scans / "sub" / "b.png")
    _two_page_pdf(line_pngs[2], scans / "sub" / "doc.pdf")
    (scans / "labels.tsv").write_text("not a document: left out\n")
    out = tmp_path / "texts"
    done = cli(services, "ocr", str(scans), "-o", str(out), "--concurrency", "2")
    assert done.returncode == 0, done.stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a.txt", "sub/b.txt", "sub/doc.txt"]
    for source, text in ((scans / "a.png", out / "a.txt"), (scans / "sub" / "b.png", out / "sub" / "b.txt"),
                         (scans / "sub" / "doc.pdf", out / "sub" / "doc.txt")):
        assert text.read_text(encoding="utf-8") == _service_text(services, source), source
    # The PDF's pages are joined as the service joins them.
    assert "\f" in (out / "sub" / "doc.txt").read_text(encoding="utf-8")
    assert "3/3" in done.stderr and "wrote 3 of 3 texts to" in done.stderr  # the progress bar, then the summary
    assert done.stdout == ""


def test_a_batch_goes_past_bad_files_and_reports_them_at_the_end(services, line_pngs, tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(line_pngs[0], scans / "1-good.png")
    (scans / "2-not-an-image.png").write_text("these are words, not pixels")
    (scans / "3-gone.png").symlink_to(tmp_path / "deleted.png")  # a broken link: the file cannot be read
    shutil.copy(line_pngs[1], scans / "4-good.png")
    out = tmp_path / "texts"
    done = cli(services, "ocr", str(scans), "-o", str(out))
    assert_clean_failure(done, "2 file(s) failed:")
    assert sorted(p.name for p in out.iterdir()) == ["1-good.txt", "4-good.txt"]
    report = done.stderr[done.stderr.index("wrote 2 of 4 texts"):]
    bad_image, gone = report.splitlines()[2:4]
    assert bad_image.startswith(f"  {scans / '2-not-an-image.png'}: ") and "[HTTP 422 invalid_image]" in bad_image
    assert gone == f"  {scans / '3-gone.png'}: cannot read: No such file or directory"
    assert done.returncode == 1


def test_globs_and_files_together(services, line_pngs, tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    (scans / "2026" / "03").mkdir(parents=True)
    shutil.copy(line_pngs[0], scans / "2026" / "03" / "receipt.png")
    shutil.copy(line_pngs[1], scans / "2026" / "cover.png")
    shutil.copy(line_pngs[2], tmp_path / "loose.png")
    out = tmp_path / "texts"
    done = cli(services, "ocr", f"{scans}/**/*.png", str(tmp_path / "loose.png"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.txt"))
    assert written == ["2026/03/receipt.txt", "2026/cover.txt", "loose.txt"]


def test_json_batch_writes_each_response(services, line_pngs, tmp_path: Path) -> None:
    out = tmp_path / "answers"
    done = cli(services, "ocr", str(line_pngs[0]), str(line_pngs[1]), "-o", str(out), "--json", "--adapter", "demo-zh")
    assert done.returncode == 0, done.stderr
    answers = {p.name: OCRResponse.model_validate_json(p.read_text()) for p in out.iterdir()}
    assert set(answers) == {"line-0.json", "line-1.json"}
    assert all(a.adapter == services.summary["adapter"] for a in answers.values())


@pytest.mark.parametrize(
    "arguments, says",
    [
        (["{tmp}/nothing-here/*.png", "-o", "{tmp}/out"], "no image or PDF matches {tmp}/nothing-here/*.png"),
        (["{tmp}/missing.png", "-o", "{tmp}/out"], "no such file or folder: {tmp}/missing.png"),
        (["{tmp}/empty", "-o", "{tmp}/out"], "no image or PDF in folder {tmp}/empty"),
        (["{png0}", "{png1}"], "2 files to read: give a folder for their texts with -o/--output"),
        (["{tmp}/same/a.png", "{tmp}/same/a.jpg", "-o", "{tmp}/out"], "would both be written to {tmp}/out/a.txt"),
        (["{png0}", "--stream", "-o", "{tmp}/out"], "--stream prints one file's text as it arrives"),
        (["{png0}", "--concurrency", "0"], "must be 1 or more"),
        (["{png0}", "--resolution", "huge"], "invalid choice: 'huge'"),
    ],
)
def test_batch_usage_errors_send_nothing(services, line_pngs, tmp_path: Path, arguments, says) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "same").mkdir()
    shutil.copy(line_pngs[0], tmp_path / "same" / "a.png")
    Image.open(line_pngs[0]).convert("RGB").save(tmp_path / "same" / "a.jpg")
    values = {"tmp": tmp_path, "png0": line_pngs[0], "png1": line_pngs[1]}
    done = cli(services, "ocr", *[a.format(**values) for a in arguments])
    assert done.returncode == 2, done.stderr
    assert_clean_failure(done, says.format(**values))
    assert not (tmp_path / "out").exists()


def test_a_batch_stops_when_the_service_cannot_be_reached(line_pngs, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [OCRTUNE, "ocr", str(line_pngs[0]), str(line_pngs[1]), "-o", str(tmp_path / "out"), "--inference-url", closed],
        capture_output=True, text=True, timeout=120,
    )
    assert_clean_failure(done, f"cannot reach the inference service at {closed}")
    assert done.returncode == 1 and "file(s) failed" not in done.stderr


# --- one file: stdout, --stream, --resolution ----------------------------------------------------
def test_stream_prints_the_text_as_it_arrives(services, line_pngs) -> None:
    expected = _service_text(services, line_pngs[0])
    streamed = cli(services, "ocr", str(line_pngs[0]), "--stream")
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.strip() == expected.strip()
    assert "base model" in streamed.stderr and "tokens" in streamed.stderr
    events = cli(services, "ocr", str(line_pngs[0]), "--stream", "--json")
    assert events.returncode == 0, events.stderr
    parsed = [OCRStreamEvent.model_validate_json(line) for line in events.stdout.splitlines()]
    deltas = [e.delta for e in parsed if not e.done]
    assert len(deltas) > 1 and "".join(deltas) == expected  # several pieces: printed as they came
    assert parsed[-1].done and parsed[-1].response is not None and parsed[-1].response.text == expected


def test_stream_of_a_pdf_marks_each_page(services, line_pngs, tmp_path: Path) -> None:
    pdf = _two_page_pdf(line_pngs[0], tmp_path / "two.pdf")
    done = cli(services, "ocr", str(pdf), "--stream")
    assert done.returncode == 0, done.stderr
    first, second = _service_text(services, pdf).split("\f")
    assert done.stdout == f"{first}\n--- page 2 ---\n{second}\n"


def test_resolution_is_sent_with_the_request(services, line_pngs) -> None:
    args = build_parser().parse_args(["ocr", str(line_pngs[0]), "--resolution", "tiny", "--max-tokens", "64"])
    options = ocr_options(args)
    assert options.resolution is ResolutionMode.tiny and options.max_tokens == 64
    assert ocr_operation(line_pngs[0], options=options).form["resolution"] == "tiny"
    assert ocr_options(build_parser().parse_args(["ocr", "x.png"])).resolution is ResolutionMode.auto
    # The demo's reader has no resolution modes: it reads the same with any.
    done = cli(services, "ocr", str(line_pngs[0]), "--resolution", "tiny")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == _service_text(services, line_pngs[0], resolution="tiny").strip()


# --- finetune flags --------------------------------------------------------------------------------
def test_finetune_sends_eval_and_target_modules(services, tmp_path: Path) -> None:
    eval_path = Path(services.summary["eval_uri"])
    done = subprocess.run(
        [OCRTUNE, "finetune", services.summary["train_uri"], "--trainer-url", services.trainer_url,
         "--name", "cli-flags", "--eval", eval_path.name, "--target-modules", "q_proj, v_proj", "--json"],
        capture_output=True, text=True, timeout=120, cwd=eval_path.parent,  # a relative path, made absolute
    )
    assert done.returncode == 0, done.stderr
    job = Job.model_validate_json(done.stdout)
    try:
        assert job.request.eval is not None and job.request.eval.uri == str(eval_path)
        assert job.request.hyperparameters.target_modules == ["q_proj", "v_proj"]
    finally:
        cancelled = cli(services, "cancel", job.id, "--wait")
    assert cancelled.returncode == 0, cancelled.stderr
    final = Job.model_validate_json(cli(services, "job", job.id, "--json").stdout)
    assert final.state in (JobState.cancelled, JobState.succeeded, JobState.failed)
    assert final.request.hyperparameters.target_modules == ["q_proj", "v_proj"]


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--target-modules", "q_proj,v_proj;rm -rf"], "target_modules: Value error, target module 'v_proj;rm -rf'"),
        (["--target-modules", ","], "target_modules must name at least one module"),
    ],
)
def test_bad_target_modules_are_refused_before_sending(services, flags, says) -> None:
    def job_ids() -> list[str]:
        return [job["id"] for job in json.loads(cli(services, "jobs", "--json").stdout)["jobs"]]

    before = job_ids()
    done = cli(services, "finetune", services.summary["train_uri"], "--name", "cli-bad-targets", *flags)
    assert done.returncode == 2
    assert_clean_failure(done, says)
    assert job_ids() == before


def test_a_target_module_the_model_lacks_fails_the_job_by_name(services) -> None:
    done = cli(services, "finetune", services.summary["train_uri"], "--name", "cli-no-such-module",
               "--target-modules", "q_proj,no_such_proj", "--follow")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "state: failed" in done.stderr and "no_such_proj" in done.stdout


def test_an_eval_dataset_outside_the_data_roots_is_refused_by_the_server(services) -> None:
    done = cli(services, "finetune", services.summary["train_uri"], "--name", "cli-bad-eval",
               "--eval", "/etc/hostname")
    assert_clean_failure(done, "outside the allowed data roots")
    assert "(eval.uri)" in done.stderr and "[HTTP 422 uri_not_allowed]" in done.stderr


def test_finetune_epochs_trains_whole_passes(services) -> None:
    done = cli(services, "finetune", services.summary["train_uri"], "--name", "cli-epochs", "--max-samples", "16",
               "--batch-size", "8", "--epochs", "1", "--warmup-steps", "0", "--follow", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    job = Job.model_validate_json(done.stdout)
    hp = job.request.hyperparameters
    assert (hp.num_train_epochs, hp.max_steps) == (1.0, None)
    assert job.state is JobState.succeeded and job.result.train_samples is not None
    # One pass over the train rows, 8 a step, not the recipe's 60 steps (whether a last partial
    # batch makes a step of its own is the trainer's business).
    rows = job.result.train_samples
    assert job.progress.total_steps in (rows // 8, -(-rows // 8)), (job.progress, rows)


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--epochs", "1", "--max-steps", "4"], "argument --max-steps: not allowed with argument --epochs"),
        (["--epochs", "0"], "num_train_epochs: Input should be greater than 0"),
        (["--epochs", "two"], "argument --epochs: invalid float value: 'two'"),
    ],
)
def test_bad_epochs_are_refused_before_sending(services, flags, says) -> None:
    done = cli(services, "finetune", services.summary["train_uri"], "--name", "cli-bad-epochs", *flags)
    assert done.returncode == 2
    assert_clean_failure(done, says)
