"""The main job (README command 1) on the CPU with the shipped reader, as a user runs it.

The demo builds scanned receipt lines (another kind than the reader's pre-training),
starts both services, fine-tunes over HTTP, then OCRs lines it NEVER trained on through
the inference service (vLLM) with and without the new adapter. Its output must show the
base model reading (real text, clearly non-zero CER) and the adapter at most half its
CER: generalisation to new lines, not memorisation. It must leave the services up (and
`stop` must take them down).
"""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from ocrtune_devkit.processes import group_alive


def test_demo_succeeds(demo_run) -> None:
    assert demo_run.returncode == 0, demo_run.stdout[-4000:] + demo_run.stderr[-4000:]
    assert demo_run.summary is not None
    assert "Traceback" not in demo_run.stderr


def test_adapter_halves_cer_on_lines_never_trained_on(demo_run) -> None:
    summary = demo_run.summary
    assert summary["offline_reader"] is True
    served = summary["served"]
    before, after = summary["cer_before"], summary["cer_after"]
    # Served by vLLM through POST /ocr, base vs X-Adapter, on lines absent from train.parquet.
    assert served["images"] >= 30
    assert 0.2 < before < 1.0, f"the base model should read this domain, with errors: CER {before:.2f}"
    assert after <= 0.5 * before, f"CER {before:.2f} -> {after:.2f} is not at most half"
    # The trainer's own evaluation (on the eval split it was given) agrees.
    trainer = summary["trainer_result"]
    assert trainer["cer_after"]["corpus_cer"] <= 0.5 * trainer["cer_before"]["corpus_cer"]
    assert summary["adapter"].startswith("demo-zh@")


def test_held_out_lines_are_not_training_lines(demo_run) -> None:
    import pyarrow.parquet as pq

    data = demo_run.workdir / "data"
    train = {row["text"] for row in pq.read_table(data / "train.parquet").to_pylist()}
    held_out = [row["text"] for row in pq.read_table(data / "eval.parquet").to_pylist()]
    assert held_out and not train & set(held_out)


def test_base_output_is_readable_text(demo_run) -> None:
    out = demo_run.stdout
    table = out[out.index("Held-out lines") :]
    assert "\ufffd" not in table, "the base model printed broken bytes"


def test_output_shows_texts_side_by_side_with_cer(demo_run) -> None:
    out = demo_run.stdout
    assert "base model" in out and "with adapter" in out
    assert "CER without adapter" in out
    assert "state: succeeded" in out and "training" in out
    # The progress bar reports steps, loss and ETA.
    assert "loss=" in out and "eta=" in out


def test_services_stay_up_with_curl_lines(demo_run) -> None:
    out = demo_run.stdout
    assert f"curl -s -H 'X-Adapter: {demo_run.summary['adapter']}'" in out
    assert "/finetune" in out and "python -m ocrtune_devkit.demo stop" in out
    for url in (demo_run.inference_url, demo_run.trainer_url):
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200


def test_demo_runtime_is_reported(demo_run) -> None:
    timings = demo_run.summary["timings_s"]
    assert timings["total"] > 0
    summary = demo_run.summary
    print(
        f"demo took {demo_run.seconds:.0f} s: {timings}; served CER {summary['cer_before']:.3f} -> "
        f"{summary['cer_after']:.3f} ({summary['served']}); trainer's eval CER "
        f"{summary['trainer_result']['cer_before']['corpus_cer']:.3f} -> {summary['trainer_result']['cer_after']['corpus_cer']:.3f}"
    )


def test_stop_ends_both_services(demo_run) -> None:
    """Runs last in this module: the CLI tests (tests/client) use these services before it."""
    pids = [demo_run.summary["services"][name]["pid"] for name in ("inference", "trainer")]
    done = subprocess.run(
        [sys.executable, "-m", "ocrtune_devkit.demo", "stop", "--workdir", str(demo_run.workdir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "stopped" in done.stdout
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(group_alive(pid) for pid in pids):
        time.sleep(0.5)
    assert not any(group_alive(pid) for pid in pids), "a service (or one of its engine processes) survived stop"
