"""The fine-tune dashboard (trainer service, /ui/) in Chromium: upload, fine-tune live, adapter, playground."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocrtune_shared.finetune import FinetuneRequest, HyperParameters

from .conftest import INFERENCE_KEY, LAPTOP_SCREENS, TRAINER_KEY, Console, layout, screenshot, watch_script_errors
from .test_playground import card_text, ocr_answer, read

# Seconds, on the tiny model: a few training steps and two short CER evaluations.
TINY_RECIPE = {
    "max_steps": 3,
    "warmup_steps": 0,
    "per_device_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "learning_rate": 0.002,
    "max_new_tokens": 12,
    "optimizer": "adamw_torch",
    "eval_steps": 1,  # an eval loss on the held-out rows at every step: the loss chart's second series
}
JOB_TIMEOUT_MS = 240_000
# Records what the job view showed at each redraw: state, phase, loss-curve points, the adapter's CER
# caption. One record per redraw: the nodes a redraw put in keep what they showed then, however
# many redraws one observer callback reports.
RECORD_REDRAWS = """() => { window.seen = [];
    new MutationObserver((records) => { for (const record of records) {
        const added = [...record.addedNodes].filter(n => n.nodeType === 1);
        const find = (s) => added.map(n => n.matches(s) ? n : n.querySelector(s)).find(Boolean);
        const state = find('#job-state');
        if (!state) continue;
        const chart = find('#loss-chart'), after = find('#cer-chart .bar:last-of-type .caption');
        window.seen.push({state: state.textContent, phase: state.nextElementSibling.textContent,
                          points: chart ? Number(chart.dataset.points || 0) : 0, after: after ? after.textContent : null});
    } }).observe(document.querySelector('#job-view'), {childList: true}); }"""


@pytest.fixture(scope="module")
def train_parquet(tmp_path_factory: pytest.TempPathFactory, synthetic_samples: list) -> Path:
    from ocrtune_devkit.synthetic import write_parquet

    return write_parquet(synthetic_samples, tmp_path_factory.mktemp("upload") / "receipts-train.parquet")


def open_dashboard(page, console: Console) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{console.trainer_url}/ui/")
    page.wait_for_selector("#notice:not([hidden])")
    assert "API key" in page.inner_text("#notice")
    page.fill("#api-key", TRAINER_KEY)
    page.click("#key-form button")
    page.wait_for_selector("#recipe input[data-path]")


def recipe_shown(page) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return page.eval_on_selector_all("#recipe input[data-path]", "inputs => Object.fromEntries(inputs.map(i => [i.dataset.path, i.value]))")


def upload(page, path: Path) -> str:  # type: ignore[no-untyped-def]
    page.set_input_files("#dataset-file", str(path))
    page.wait_for_function("() => document.querySelector('#upload-state').dataset.uri || document.querySelector('#upload-state.error-text')")
    return page.inner_text("#upload-state")


def test_fine_tune_from_an_uploaded_file_followed_live(page, console: Console, train_parquet: Path, artifacts) -> None:
    open_dashboard(page, console)
    # The recipe's defaults are FinetuneRequest's own, shown before anything is typed.
    shown = recipe_shown(page)
    defaults = HyperParameters()
    for name, value in defaults.model_dump(mode="json").items():
        text = shown[f"hyperparameters.{name}"]
        if value is None:
            assert text == "", name  # an optional field left empty
        elif isinstance(value, list):
            assert text == ", ".join(value), name
        elif isinstance(value, (int, float)):
            assert float(text) == value, name
        else:
            assert text == value, name
    assert shown["prompt"] == FinetuneRequest.model_fields["prompt"].default
    assert page.inner_text("#changed-count") == "none changed"

    state = upload(page, train_parquet)
    uri = page.get_attribute("#upload-state", "data-uri")
    assert state.startswith(f"✓ {train_parquet.name} · 16 rows")
    assert Path(uri).is_file() and Path(uri).read_bytes() == train_parquet.read_bytes()
    assert Path(uri).is_relative_to(console.trainer.data_dir / "uploads")

    page.fill("#adapter-name", "ui-zh")
    for name, value in TINY_RECIPE.items():
        page.fill(f"#recipe input[data-path='hyperparameters.{name}']", str(value))
    assert page.inner_text("#changed-count") == f"{len(TINY_RECIPE)} changed"
    page.evaluate(RECORD_REDRAWS)
    page.click("#submit")
    page.wait_for_selector("#job-view[data-state]")
    page.wait_for_function(
        "() => ['succeeded', 'failed', 'cancelled'].includes(document.querySelector('#job-view').dataset.state)"
        " && document.querySelector('#job-adapter, #job-error')",
        timeout=JOB_TIMEOUT_MS,
    )
    with console.trainer_client() as http:
        jobs = http.get("/finetune").json()["jobs"]
    job = next(j for j in jobs if j["request"]["adapter_name"] == "ui-zh")
    assert job["state"] == "succeeded", job["error"]
    # The request the form sent: the upload's URI, the edited recipe, every other default as shown.
    assert job["request"]["train"]["uri"] == uri
    assert job["request"]["hyperparameters"] == {**defaults.model_dump(mode="json"), **TINY_RECIPE}

    seen = page.evaluate("window.seen")
    assert [s["state"] for s in seen].count("running") > 1 and seen[-1]["state"] == "succeeded"
    # The loss curve grew while the job ran, point by point, to one point per step.
    growing = [s["points"] for s in seen if s["state"] == "running" and s["points"]]
    assert growing == sorted(growing) and sorted(set(growing)) == list(range(1, TINY_RECIPE["max_steps"] + 1))
    # The adapter's CER appears once it is measured, not before.
    assert all(s["after"] == "…" for s in seen if s["phase"] in ("checking the data", "measuring the base model's CER", "training"))
    assert page.get_attribute("#loss-chart", "data-points") == str(len(job["result"]["loss_curve"]))
    evaluated = job["result"]["eval_loss_curve"]
    assert evaluated and page.get_attribute("#loss-chart", "data-second-points") == str(len(evaluated))
    assert page.eval_on_selector_all("#loss-chart .series-dot.second", "dots => dots.length") == len(evaluated)
    assert page.eval_on_selector_all("#loss-chart .legend text", "ts => ts.map(t => t.textContent)") == ["train", "eval"]

    # CER before and after, as the job measured them.
    captions = page.eval_on_selector_all("#cer-chart .bar text.caption", "nodes => nodes.map(n => n.textContent)")
    result = job["result"]
    assert captions == [f"{result['cer_before']['corpus_cer'] * 100:.0f}%", f"{result['cer_after']['corpus_cer'] * 100:.0f}%"]
    assert page.inner_text("#job-state") == "succeeded"
    assert "ui-zh@1" in page.inner_text("#job-adapter")

    # The new adapter is in the inference service's list, with a link to try it.
    page.wait_for_selector("#adapter-rows tr[data-adapter='ui-zh@1']")
    link = page.get_attribute("#adapter-rows a[data-try='ui-zh@1']", "href")
    assert link == f"{console.inference_url}/ui/?adapter=ui-zh%401"
    # Picked again later (a reload): the view is rebuilt from the job's events as it was drawn live.
    page.add_init_script(f"document.addEventListener('DOMContentLoaded', () => {{ ({RECORD_REDRAWS})(); }})")
    page.goto(f"{console.trainer_url}/ui/?job={job['id']}")
    # Until the replay has reached the job's end (the first drawing, from GET /finetune/{id}, is already "succeeded").
    page.wait_for_function(
        "() => window.seen && window.seen.some(s => s.state === 'running') && window.seen.at(-1).state === 'succeeded'"
    )
    page.wait_for_selector("#job-view[data-state=succeeded] #job-adapter")
    replayed = page.evaluate("window.seen")
    assert [s["points"] for s in replayed if s["state"] == "running" and s["points"]] == growing
    assert all(s["after"] == "…" for s in replayed if s["phase"] in ("measuring the base model's CER", "training"))
    assert page.eval_on_selector_all("#cer-chart .bar text.caption", "nodes => nodes.map(n => n.textContent)") == captions
    screenshot(page, "dashboard-succeeded", full_page=True)

    with page.context.expect_page() as popup:
        page.click("#adapter-rows a[data-try='ui-zh@1']")
    playground = popup.value
    watch_script_errors(playground)
    playground.wait_for_load_state()
    playground.fill("#api-key", INFERENCE_KEY)  # another service, another origin: its own key
    playground.click("#key-form button")
    playground.wait_for_selector("#models input[value='ui-zh@1']:checked")
    line = console.trainer.data_dir / "line.png"
    from ocrtune_devkit.synthetic import make_samples

    sample = make_samples(1, seed=97531)[0]
    line.write_bytes(sample.png)
    read(playground, line, reference=sample.text)
    assert playground.get_attribute(".card[data-model='ui-zh@1']", "data-state") == "done"
    assert playground.get_attribute(".card[data-model='base']", "data-state") == "done"
    shown = card_text(playground, "ui-zh@1")
    assert shown["pivot"] == sample.text
    assert shown["own"] == ocr_answer(console, line.read_bytes(), "ui-zh@1")["text"]
    screenshot(playground, "playground-new-adapter", full_page=True)
    assert page.script_errors == [] and playground.script_errors == []


def test_upload_and_recipe_errors_are_told_in_words(page, console: Console, tmp_path: Path, artifacts) -> None:
    open_dashboard(page, console)
    not_data = tmp_path / "notes.txt"
    not_data.write_text("not a dataset")
    with console.trainer_client() as http:
        refused = http.post("/datasets", files={"file": ("notes.txt", b"not a dataset")}).json()["error"]
    assert upload(page, not_data) == f"{refused['message']} (at {refused['where']})"

    # A parquet with an empty text: accepted at upload (the file is sound), refused by the job's
    # validation, and the dashboard shows the job's error as the service words it.
    from ocrtune_devkit.synthetic import make_samples
    from ocrtune_shared.image_parquet import write_image_parquet

    samples = make_samples(4, seed=11)
    bad = write_image_parquet([(s.png, f"{i}.png", "" if i == 2 else s.text) for i, s in enumerate(samples)], tmp_path / "bad.parquet")
    assert upload(page, bad).startswith("✓ bad.parquet · 4 rows")
    page.fill("#adapter-name", "ui-bad")
    page.fill("#recipe input[data-path='hyperparameters.learning_rate']", "5")
    page.click("#submit")
    page.wait_for_selector("#form-error:not([hidden])")
    assert "hyperparameters.learning_rate" in page.inner_text("#form-error")
    assert page.eval_on_selector("#recipe input[data-path='hyperparameters.learning_rate']", "i => i.closest('label').classList.contains('invalid')")
    page.click("#reset-recipe")
    page.click("#submit")
    page.wait_for_function("() => document.querySelector('#job-view').dataset.state === 'failed'", timeout=JOB_TIMEOUT_MS)
    with console.trainer_client() as http:
        job = next(j for j in http.get("/finetune").json()["jobs"] if j["request"]["adapter_name"] == "ui-bad")
    assert job["state"] == "failed" and "empty text" in job["error"]["message"]
    assert page.inner_text("#job-error") == f"Failed: {job['error']['message']} (at {job['error']['where']})"
    screenshot(page, "dashboard-failed-job")
    assert page.script_errors == []


def test_dashboard_fits_laptop_screens(page, console: Console, artifacts) -> None:
    open_dashboard(page, console)
    page.wait_for_selector("#job-rows tr[data-job]")
    page.click("#job-rows tr[data-job] >> nth=0")
    page.wait_for_selector("#loss-chart")
    for width, height in LAPTOP_SCREENS:
        page.set_viewport_size({"width": width, "height": height})
        boxes = layout(page, form="#new-job", view="#job-view", charts=".charts")
        assert boxes["scroll"] <= width, f"horizontal scrolling at {width}x{height}"
        assert boxes["form"]["right"] <= boxes["view"]["left"]  # the form beside the live view
        assert boxes["charts"]["bottom"] <= height  # the charts on the first screen
        screenshot(page, f"dashboard-{width}x{height}")
    assert json.dumps(page.script_errors) == "[]"
