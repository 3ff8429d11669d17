"""Synthetic Chinese OCR lines, rendered with Debian's Noto CJK fonts, in the layouts users bring.

Three kinds of line:
- ``make_samples``: the tiny random model's lines (its 90-character charset, one style);
- ``PRINT``: what the reader model is pre-trained on: Noto Sans CJK (regular and bold),
  random frequent Hanzi, digits and symbols, mild blur;
- ``SCAN``: the demo's "user documents", another kind than pre-training: Noto Serif CJK,
  receipt-style content (items, amounts, dates, numbers), grey paper, blur, sensor
  noise, a slight skew. The reader misreads some of these; a LoRA fine-tune fixes that.

Layouts written:
- ``write_parquet``: ``image`` (a struct of encoded ``bytes`` and ``path``, as the
  HF ``datasets`` ``Image`` feature stores it) and ``text``, with the feature
  metadata that lets ``datasets`` read the column back as images;
- ``write_image_folder``: PNG files plus a ``labels.tsv`` (``path<TAB>text``);
- ``write_hf_disk``: a ``datasets`` ``save_to_disk`` folder.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ocrtune_devkit.charset import CJK_CHARS, DIGITS, LOOKALIKES, PUNCTUATION, READER_HANZI, READER_SYMBOLS
from ocrtune_shared.image_parquet import write_image_parquet

FONT_DIRS = tuple(
    Path(d) for d in (os.environ.get("OCRTUNE_FONT_DIR", ""), "/usr/share/fonts/opentype/noto") if d
)
SANS, SANS_BOLD = "NotoSansCJK-Regular.ttc", "NotoSansCJK-Bold.ttc"
SERIF, SERIF_BOLD = "NotoSerifCJK-Regular.ttc", "NotoSerifCJK-Bold.ttc"
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


@lru_cache(maxsize=32)
def named_font(name: str, size: int) -> ImageFont.FreeTypeFont:
    for folder in FONT_DIRS:
        if (folder / name).exists():
            return ImageFont.truetype(str(folder / name), size)
    raise FileNotFoundError(
        f"font {name} not found in {', '.join(map(str, FONT_DIRS))}; install Debian's fonts-noto-cjk "
        "(scripts/setup.sh does) or point OCRTUNE_FONT_DIR at a folder holding it"
    )


def print_text(rng: random.Random, min_len: int = 2, max_len: int = 10) -> str:
    """Pre-training text: frequent Hanzi, now and then a number, a symbol or punctuation."""
    length = rng.randint(min_len, max_len)
    out: list[str] = []
    while len(out) < length:
        roll = rng.random()
        if roll < 0.72:
            out.append(rng.choice(READER_HANZI))
        elif roll < 0.9:
            out.extend(rng.choice(DIGITS) for _ in range(rng.randint(1, 4)))
        elif roll < 0.96:
            out.append(rng.choice(PUNCTUATION))
        else:
            out.append(rng.choice(READER_SYMBOLS))
    return "".join(out[:length])


RECEIPT_ITEMS = ("咖啡", "牛奶", "鸡蛋", "米面", "茶水", "果汁", "饭菜", "鱼肉", "包装袋", "面包", "水果", "白糖", "酒")
RECEIPT_FIELDS = ("合计", "总价", "单价", "数量", "金额", "找零", "现金", "税额", "折扣", "优惠", "实付", "应收")


def receipt_text(rng: random.Random) -> str:
    """One line of a shop receipt or invoice: an item and its price, a total, a date, a number."""
    amount = f"{rng.randint(0, 999)}.{rng.randint(0, 99):02d}"
    kind = rng.randrange(6)
    if kind == 0:
        return f"{rng.choice(RECEIPT_ITEMS)}{rng.randint(1, 9)}×{amount}"
    if kind == 1:
        return f"{rng.choice(RECEIPT_FIELDS)}：{amount}元"
    if kind == 2:
        return f"{rng.randint(2000, 2029)}年{rng.randint(1, 12)}月{rng.randint(1, 31)}日"
    if kind == 3:
        return f"{rng.choice(('发票号码', '订单编号', '电话', '账户'))}：{rng.randint(10**5, 10**8 - 1)}"
    if kind == 4:
        return f"{rng.choice(READER_HANZI)}{rng.choice(READER_HANZI)}{rng.choice(('店', '市', '公司', '餐厅'))}¥{amount}"
    return f"{rng.choice(RECEIPT_FIELDS)}{rng.randint(1, 99)}{rng.choice(('件', '个', '张', '瓶', '斤'))}"


@dataclass(frozen=True)
class LineStyle:
    """How a line looks: fonts, size, paper and ink, and the degradations of a scan."""

    fonts: tuple[str, ...]
    size: tuple[int, int]
    blur: tuple[float, float]
    ink: tuple[int, int] = (0, 60)
    paper: tuple[int, int] = (235, 255)
    noise_sigma: tuple[float, float] = (0.0, 0.0)
    speckle: float = 0.005
    skew_deg: float = 0.0
    jitter: int = 0
    texts: Callable[[random.Random], str] = print_text


PRINT = LineStyle(fonts=(SANS, SANS, SANS_BOLD), size=(30, 40), blur=(0.0, 0.7), jitter=6)
SCAN = LineStyle(
    fonts=(SERIF, SERIF, SERIF_BOLD),
    size=(30, 38),
    blur=(0.3, 0.9),
    ink=(10, 70),
    paper=(215, 245),
    noise_sigma=(3.0, 8.0),
    speckle=0.005,
    skew_deg=1.0,
    jitter=4,
    texts=receipt_text,
)


def render_styled(text: str, style: LineStyle, rng: random.Random) -> Image.Image:
    """``text`` on a 448x56 line in ``style``; the font shrinks until the line fits."""
    paper = rng.randint(*style.paper)
    image = Image.new("L", LINE_SIZE, color=paper)
    draw = ImageDraw.Draw(image)
    name = rng.choice(style.fonts)
    size = rng.randint(*style.size)
    while True:
        font = named_font(name, size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left <= LINE_SIZE[0] - 8 or size <= 14:
            break
        size -= 2
    room = max(0, LINE_SIZE[0] - (right - left) - 4)
    x = 2 + (rng.randint(0, room) if style.jitter else room // 2) - left
    y = (LINE_SIZE[1] - (bottom - top)) // 2 - top + rng.randint(-style.jitter // 2, style.jitter // 2)
    draw.text((x, y), text, fill=rng.randint(*style.ink), font=font)
    if style.skew_deg:
        image = image.rotate(rng.uniform(-style.skew_deg, style.skew_deg), resample=Image.BILINEAR, fillcolor=paper)
    radius = rng.uniform(*style.blur)
    if radius > 0.05:
        image = image.filter(ImageFilter.GaussianBlur(radius=radius))
    if style.noise_sigma[1] > 0:
        import numpy as np

        noise_rng = np.random.default_rng(rng.getrandbits(32))
        pixels = np.asarray(image, dtype=np.float32)
        pixels = pixels + noise_rng.normal(0.0, rng.uniform(*style.noise_sigma), pixels.shape)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).copy()
    if style.speckle:
        pixels = image.load()
        for _ in range(int(LINE_SIZE[0] * LINE_SIZE[1] * style.speckle)):
            pixels[rng.randrange(LINE_SIZE[0]), rng.randrange(LINE_SIZE[1])] = rng.randint(120, 255)
    return image.convert("RGB")


def make_styled_samples(count: int, style: LineStyle, *, seed: int, exclude: set[str] | None = None) -> list[Sample]:
    """``count`` lines of distinct texts in ``style``, none of them in ``exclude``."""
    rng = random.Random(seed)
    seen = set(exclude or ())
    samples: list[Sample] = []
    while len(samples) < count:
        text = style.texts(rng)
        if text in seen:
            continue
        seen.add(text)
        buffer = io.BytesIO()
        render_styled(text, style, rng).save(buffer, format="PNG")
        samples.append(Sample(text=text, png=buffer.getvalue()))
    return samples


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
