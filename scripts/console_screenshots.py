"""Screenshots of the web console for the README, from the services a demo left running.

    .venv/bin/python -m ocrtune_devkit.demo | tee var/demo/output.txt
    .venv/bin/python scripts/console_screenshots.py --workdir var/demo --demo-output var/demo/output.txt

Writes docs/img/playground.png (a held-out line read by the base model and the demo's
adapter, against its true text), docs/img/dashboard.png (the demo's fine-tune) and, with
--demo-output, docs/img/demo.png (the demo's terminal output). Uses Debian's chromium
through Playwright, as tests/ui does (scripts/setup.sh --dev installs both).
"""

from __future__ import annotations

import argparse
import html
import json
import re
import tempfile
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREEN = {"width": 1366, "height": 768}
PROGRESS = re.compile(r"^\S+:\s+\d+%\|")


def playground(page: Page, inference_url: str, adapter: str, image: Path, reference: str, out: Path) -> None:
    page.goto(f"{inference_url}/ui/?adapter={adapter}")
    page.wait_for_selector(f"#models input[value^='{adapter}@']:checked")
    page.set_input_files("#file", str(image))
    page.fill("#max-tokens", "24")
    page.fill("#reference", reference)
    page.click("#run")
    page.wait_for_function("() => [...document.querySelectorAll('.card[data-state]')].every(c => c.dataset.state === 'done')")
    page.screenshot(path=str(out))


def dashboard(page: Page, trainer_url: str, job_id: str, out: Path) -> None:
    page.goto(f"{trainer_url}/ui/?job={job_id}")
    page.wait_for_selector("#job-view[data-state=succeeded] #job-adapter")
    page.wait_for_selector("#adapter-rows a[data-try]")
    page.screenshot(path=str(out))


def terminal_lines(text: str, table_rows: int = 10) -> list[str]:
    """The demo's output as a terminal ends up showing it, up to its summary, the 40-line table cut short."""
    # A progress bar redraws its line (after a carriage return, or a line of its own when the output
    # is a file): the terminal keeps the last drawing.
    lines: list[str] = []
    for line in (raw.rsplit("\r", 1)[-1].rstrip() for raw in text.split("\n")):
        if lines and PROGRESS.match(line) and PROGRESS.match(lines[-1]):
            lines[-1] = line
        else:
            lines.append(line)
    end = next((i for i, line in enumerate(lines) if line.startswith("summary:")), len(lines))
    lines = lines[:end]
    header = next((i for i, line in enumerate(lines) if line.lstrip().startswith("reference ")), None)
    footer = next((i for i, line in enumerate(lines) if line.lstrip().startswith("CER (corpus)")), None)
    if header is not None and footer is not None and footer - header - 1 > table_rows:
        hidden = footer - header - 1 - table_rows
        lines = [*lines[: header + 1 + table_rows], f"  … {hidden} more lines", *lines[footer:]]
    return lines


def terminal(page: Page, text: str, out: Path) -> None:
    """The demo's output rendered as a terminal shows it (monospace on dark), as a small palette PNG."""
    from PIL import Image

    body = html.escape("\n".join(terminal_lines(text)).strip())
    style = ("body{margin:0;background:#1e1e1e}pre{margin:0;padding:14px 18px;color:#d4d4d4;"
             "font:13px/1.35 'Noto Sans Mono CJK SC','DejaVu Sans Mono',monospace;white-space:pre}")
    with tempfile.NamedTemporaryFile("w", suffix=".html", delete=False, encoding="utf-8") as handle:
        handle.write(f"<!doctype html><meta charset=utf-8><style>{style}</style><pre>{body}</pre>")
    page.set_viewport_size({"width": 900, "height": 200})
    page.goto(Path(handle.name).as_uri())
    page.locator("pre").screenshot(path=str(out))
    # Text on a flat background needs few colours: a palette keeps the file a fraction of the size.
    Image.open(out).convert("RGB").quantize(colors=32).save(out, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "demo", help="the demo's --workdir")
    parser.add_argument("--demo-output", type=Path, help="the demo's saved terminal output")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    services = json.loads((args.workdir / "services.json").read_text())
    summary = json.loads((args.workdir / "summary.json").read_text())
    import pyarrow.parquet as pq

    reference = pq.read_table(args.workdir / "data" / "eval.parquet").column("text")[0].as_py()
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=SCREEN)
        playground(page, services["inference"]["url"], summary["adapter"].split("@")[0],
                   args.workdir / "data" / "held-out-0.png", reference, args.out / "playground.png")
        dashboard(page, services["trainer"]["url"], summary["job_id"], args.out / "dashboard.png")
        if args.demo_output:
            terminal(page, args.demo_output.read_text(encoding="utf-8"), args.out / "demo.png")
        browser.close()
    for name in ("playground.png", "dashboard.png", "demo.png"):
        if (args.out / name).exists():
            print(f"{args.out / name}: {(args.out / name).stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
