"""The OCR playground (inference service, /ui/) in Chromium: an image read by the base model and an adapter."""

from __future__ import annotations

import re

import httpx

from ocrtune_shared.cer import character_error_rate

from .conftest import FIXED_ADAPTER, FIXED_TEXT, INFERENCE_KEY, LAPTOP_SCREENS, Console, layout, screenshot

MAX_TOKENS = 16


def ocr_answer(console: Console, data: bytes, adapter: str | None = None, name: str = "line.png") -> dict:
    """What the service answers for the same file, asked directly."""
    with console.inference() as http:
        headers = {"X-Adapter": adapter} if adapter else {}
        response = http.post("/ocr", files={"file": (name, data)}, data={"max_tokens": str(MAX_TOKENS)}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def open_playground(page, console: Console, query: str = "") -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{console.inference_url}/ui/{query}")
    # Keys are on: the page says so, in words, before one is typed.
    page.wait_for_selector("#notice:not([hidden])")
    assert "API key" in page.inner_text("#notice")
    page.fill("#api-key", INFERENCE_KEY)
    page.click("#key-form button")
    page.wait_for_selector(f"#adapter-rows tr[data-adapter='{FIXED_ADAPTER}@1']")


def read(page, png_path, reference: str = "") -> None:  # type: ignore[no-untyped-def]
    page.set_input_files("#file", str(png_path))
    page.fill("#max-tokens", str(MAX_TOKENS))
    if reference:
        page.fill("#reference", reference)
    page.click("#run")
    page.wait_for_function(
        "() => document.querySelectorAll('.card[data-state]').length > 0"
        " && [...document.querySelectorAll('.card[data-state]')].every(c => c.dataset.state !== 'pending')"
    )


def card_text(page, model: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The card's text as shown, and with the highlighted parts taken out each way."""
    return page.eval_on_selector(
        f".card[data-model='{model}'] .ocr-text",
        """node => {
            const pick = (drop) => { const c = node.cloneNode(true); c.querySelectorAll(drop).forEach(e => e.remove()); return c.textContent; };
            return {own: pick('del'), pivot: pick('ins'), ins: node.querySelectorAll('ins').length, del: node.querySelectorAll('del').length};
        }""",
    )


def test_an_image_read_by_base_and_adapter_side_by_side(page, console: Console, line_png, artifacts) -> None:
    png_path, truth = line_png
    open_playground(page, console, f"?adapter={FIXED_ADAPTER}")
    # The link's adapter is ticked, resolved to its latest version; the base model is ticked by default.
    assert page.is_checked(f"#models input[value='{FIXED_ADAPTER}@1']")
    assert page.is_checked("#models input[value='']")

    read(page, png_path, reference=truth)
    base = ocr_answer(console, png_path.read_bytes())
    adapted = ocr_answer(console, png_path.read_bytes(), FIXED_ADAPTER)
    assert adapted["text"] == FIXED_TEXT
    shown = {model: card_text(page, model) for model in ("base", f"{FIXED_ADAPTER}@1")}
    # Against the reference (the pivot when one is typed): each card's own text with the
    # reference's missing characters struck out, and the reference with its extras marked.
    for model, answer in (("base", base), (f"{FIXED_ADAPTER}@1", adapted)):
        assert shown[model]["own"] == answer["text"]
        assert shown[model]["pivot"] == truth
        cer = character_error_rate([answer["text"]], [truth]).corpus_cer
        assert page.inner_text(f".card[data-model='{model}'] .cer") == f"CER {cer * 100:.1f}%"
        tokens = page.inner_text(f".card[data-model='{model}'] .tokens")
        assert tokens == f"{answer['usage']['prompt_tokens']} → {answer['usage']['completion_tokens']} tokens"
        assert re.fullmatch(r"\d+ ms", page.inner_text(f".card[data-model='{model}'] .latency"))
    assert shown[f"{FIXED_ADAPTER}@1"]["ins"] > 0  # 一二三四五 is not the line's text
    screenshot(page, "playground-vs-reference", full_page=True)

    # The adapter's text against the base model's instead.
    page.select_option("#pivot", "")
    page.wait_for_selector(".card.pivot[data-model='base']")
    against_base = card_text(page, f"{FIXED_ADAPTER}@1")
    assert against_base["own"] == FIXED_TEXT and against_base["pivot"] == base["text"]
    assert against_base["ins"] + against_base["del"] > 0
    screenshot(page, "playground-vs-base")
    assert page.script_errors == []


def test_a_missing_adapter_and_a_wrong_key_are_told_in_words(page, console: Console, line_png) -> None:
    png_path, _ = line_png
    open_playground(page, console, "?adapter=no-such-adapter")
    read(page, png_path)
    with console.inference() as http:
        refused = http.post("/ocr", files={"file": ("l.png", png_path.read_bytes(), "image/png")},
                            headers={"X-Adapter": "no-such-adapter"})
    assert refused.status_code == 404
    error = refused.json()["error"]
    assert page.inner_text(".card[data-model='no-such-adapter'] .error-text") == f"{error['message']} (at {error['where']})"
    assert page.get_attribute(".card[data-model='base']", "data-state") == "done"

    page.fill("#api-key", "wrong-key")
    page.click("#key-form button")
    page.wait_for_function("() => document.querySelector('#adapter-rows').innerText.includes('wrong API key')")
    message = httpx.get(f"{console.inference_url}/adapters", headers={"Authorization": "Bearer wrong-key"}).json()
    assert message["error"]["message"] in page.inner_text("#notice")
    assert page.script_errors == []


def test_a_pdf_is_read_page_by_page(page, console: Console, tmp_path, artifacts) -> None:
    from ocrtune_devkit.synthetic import make_samples

    samples = make_samples(2, seed=1357)
    pdf = tmp_path / "two-lines.pdf"
    first, second = (sample.image() for sample in samples)
    first.save(pdf, "PDF", save_all=True, append_images=[second], resolution=72)
    open_playground(page, console)
    read(page, pdf)
    answer = ocr_answer(console, pdf.read_bytes(), name="two-lines.pdf")
    assert len(answer["pages"]) == 2
    assert "PDF: every page is read" in page.inner_text("#file-name")
    assert "2 pages" in page.inner_text(".card[data-model='base'] .stats")
    # Pages apart on screen (the form feed between them shown as a blank line), each page's text whole.
    assert card_text(page, "base")["own"] == answer["text"].replace("\f", "\n\n")
    screenshot(page, "playground-pdf")
    assert page.script_errors == []


def test_playground_fits_laptop_screens(page, console: Console, line_png, artifacts) -> None:
    png_path, truth = line_png
    open_playground(page, console, f"?adapter={FIXED_ADAPTER}")
    read(page, png_path, reference=truth)
    for width, height in LAPTOP_SCREENS:
        page.set_viewport_size({"width": width, "height": height})
        boxes = layout(page, controls=".controls", cards="#cards", run="#run")
        assert boxes["scroll"] <= width, f"horizontal scrolling at {width}x{height}"
        # Controls and results side by side, the Read button on the first screen.
        assert boxes["controls"]["right"] <= boxes["cards"]["left"]
        assert boxes["run"]["bottom"] <= height
        screenshot(page, f"playground-{width}x{height}")
