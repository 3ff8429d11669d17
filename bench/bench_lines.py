"""Line and page images shared by the benchmarks, rendered here or read from a carried JSONL file.

The GPU machine has no Noto CJK fonts: render here (``--render-only``) and carry the file, or
let the font-free stand-in draw lines of the same size with PIL's default font (same tiling,
same token counts; each result names which ``render`` it used).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

PAGE_SIZE = (1024, 1448)  # A4 at ~124 dpi: DeepSeek-OCR-2 tiles it (global 1024 view + local 768 crops)
PAGE_COLUMNS, PAGE_ROWS = 2, 24


def render_lines(count: int, seed: int) -> tuple[list[tuple[str, bytes]], str]:
    """``count`` SCAN receipt lines as (text, PNG bytes), or a font-free stand-in of the same size."""
    from ocrtune_devkit.synthetic import SCAN, make_styled_samples

    try:
        return [(s.text, s.png) for s in make_styled_samples(count, SCAN, seed=seed)], "scan-noto-serif-cjk"
    except (FileNotFoundError, OSError) as exc:
        print(f"SCAN fonts unavailable ({exc}); drawing lines with PIL's default font", flush=True)
        return _fallback_lines(count, seed), "fallback-pil-default-font"


def _fallback_lines(count: int, seed: int) -> list[tuple[str, bytes]]:
    import random

    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    from ocrtune_devkit.synthetic import LINE_SIZE, receipt_text

    rng = random.Random(seed)
    try:
        font = ImageFont.load_default(size=32)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    out, seen = [], set()
    while len(out) < count:
        text = receipt_text(rng)
        if text in seen:
            continue
        seen.add(text)
        paper = rng.randint(215, 245)
        image = Image.new("L", LINE_SIZE, color=paper)
        ImageDraw.Draw(image).text((6, 10), text, fill=rng.randint(10, 70), font=font)
        image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.3, 0.9)))
        pixels = np.asarray(image, dtype=np.float32) + np.random.default_rng(rng.getrandbits(32)).normal(
            0.0, 5.0, (LINE_SIZE[1], LINE_SIZE[0])
        )
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).convert("RGB").save(buffer, format="PNG")
        out.append((text, buffer.getvalue()))
    return out


def load_or_render(path: str | None, count: int, seed: int) -> tuple[list[tuple[str, bytes]], str]:
    if path and Path(path).exists():
        lines = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(lines) < count:
            raise SystemExit(f"{path} holds {len(lines)} lines, {count} are needed (render it again)")
        render = lines[0].get("render", "file")
        return [(x["text"], base64.b64decode(x["png_b64"])) for x in lines[:count]], f"{render} ({path})"
    samples, render = render_lines(count, seed)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as out:
            for text, png in samples:
                out.write(json.dumps({"text": text, "png_b64": base64.b64encode(png).decode(), "render": render},
                                     ensure_ascii=False) + "\n")
        print(f"wrote {len(samples)} lines to {path}", flush=True)
    return samples, render


def load_or_render_pages(path: str | None, count: int, seed: int) -> tuple[list[bytes], str]:
    """``count`` receipt pages (PNG): 2 columns of 24 SCAN lines on a white A4-shaped page."""
    from PIL import Image

    lines, render = load_or_render(
        str(Path(path).with_suffix(".lines.jsonl")) if path else None, count * PAGE_COLUMNS * PAGE_ROWS, seed
    )
    pages = []
    per_page = PAGE_COLUMNS * PAGE_ROWS
    for p in range(count):
        page = Image.new("RGB", PAGE_SIZE, color=(250, 250, 248))
        for k, (_, png) in enumerate(lines[p * per_page : (p + 1) * per_page]):
            line = Image.open(io.BytesIO(png)).convert("RGB")
            column, row = divmod(k, PAGE_ROWS)
            page.paste(line, (48 + column * (line.width + 32), 48 + row * (line.height + 2)))
        buffer = io.BytesIO()
        page.save(buffer, format="PNG")
        pages.append(buffer.getvalue())
    return pages, f"pages of {per_page} {render} lines"
