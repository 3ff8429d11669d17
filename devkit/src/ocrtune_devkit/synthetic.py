"""Synthetic Chinese OCR lines, rendered with Debian's Noto Sans CJK, in the layouts users bring.

Layouts written:
- ``write_parquet``: ``image`` (a struct of encoded ``bytes`` and ``path``, as the
  HF ``datasets`` ``Image`` feature stores it) and ``text``, with the feature
  metadata that lets ``datasets`` read the column back as images;
- ``write_image_folder``: PNG files plus a ``labels.tsv`` (``path<TAB>text``);
- ``write_hf_disk``: a ``datasets`` ``save_to_disk`` folder.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ocrtune_client.dataset_builder import write_image_parquet
from ocrtune_devkit.charset import CJK_CHARS, DIGITS, LOOKALIKES, PUNCTUATION

FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)
LINE_SIZE = (448, 56)
FONT_SIZE = 38


@dataclass(frozen=True)
class Sample:
    text: str
    png: bytes

    def image(self) -> Image.Image:
        return Image.open(io.BytesIO(self.png)).convert("RGB")


@lru_cache(maxsize=4)
def cjk_font(size: int = FONT_SIZE) -> ImageFont.FreeTypeFont:
    for path in FONT_CANDIDATES:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    raise FileNotFoundError(
        "no CJK font found; install Debian's fonts-noto-cjk (scripts/setup.sh does): looked in "
        + ", ".join(FONT_CANDIDATES)
    )


def random_line(rng: random.Random, min_len: int = 4, max_len: int = 8) -> str:
    """A line that mixes look-alike characters, other CJK, digits and punctuation."""
    length = rng.randint(min_len, max_len)
    pools = [LOOKALIKES] * 4 + [CJK_CHARS] * 3 + [DIGITS] * 2 + [PUNCTUATION]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(length))


def render_line(text: str, *, rng: random.Random | None = None, noise: bool = True) -> bytes:
    """PNG bytes of ``text`` on a 448x56 line, with mild blur and speckle when ``noise``."""
    rng = rng or random.Random(0)
    image = Image.new("L", LINE_SIZE, color=255)
    draw = ImageDraw.Draw(image)
    font = cjk_font()
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = max(2, (LINE_SIZE[0] - (right - left)) // 2 - left)
    y = (LINE_SIZE[1] - (bottom - top)) // 2 - top
    ink = rng.randint(0, 60) if noise else 0
    draw.text((x, y), text, fill=ink, font=font)
    if noise:
        image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.0, 0.8)))
        pixels = image.load()
        for _ in range(LINE_SIZE[0] * LINE_SIZE[1] // 200):
            px, py = rng.randrange(LINE_SIZE[0]), rng.randrange(LINE_SIZE[1])
            pixels[px, py] = rng.randint(120, 255)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def make_samples(count: int, *, seed: int = 0, noise: bool = True, unique: bool = True) -> list[Sample]:
    rng = random.Random(seed)
    seen: set[str] = set()
    samples: list[Sample] = []
    while len(samples) < count:
        text = random_line(rng)
        if unique and text in seen:
            continue
        seen.add(text)
        samples.append(Sample(text=text, png=render_line(text, rng=rng, noise=noise)))
    return samples


def write_parquet(samples: list[Sample], path: Path | str) -> Path:
    return write_image_parquet(((s.png, f"{i:06d}.png", s.text) for i, s in enumerate(samples)), path)


def write_image_folder(samples: list[Sample], folder: Path | str, labels_name: str = "labels.tsv") -> Path:
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, sample in enumerate(samples):
        relative = f"images/{i:06d}.png"
        (folder / relative).write_bytes(sample.png)
        lines.append(f"{relative}\t{sample.text}")
    (folder / labels_name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def write_hf_disk(samples: list[Sample], folder: Path | str) -> Path:
    import datasets

    folder = Path(folder)
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    dataset = datasets.Dataset.from_dict(
        {"image": [{"bytes": s.png, "path": None} for s in samples], "text": [s.text for s in samples]},
        features=features,
    )
    dataset.save_to_disk(str(folder))
    return folder
