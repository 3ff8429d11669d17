"""The demo's choice of model and recipe, and its data: what it trains on and judges with.

Without a GPU (or ``OCR_BASE_MODEL``), the shipped reader with a recipe measured on this
demo's data; with one, DeepSeek-OCR-2 and the reference notebook's recipe. The data is the
user's kind of document: synthetic scanned receipt lines, train and held-out (never trained on).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ocrtune_shared.finetune import DEFAULT_BASE_MODEL, HyperParameters


# --- model and hardware ----------------------------------------------------------------
def gpu_present() -> bool:
    """Same rule as scripts/setup.sh, so the demo uses the engine that setup installed."""
    if os.environ.get("OCRTUNE_ENGINE") in ("cpu", "gpu"):
        return os.environ["OCRTUNE_ENGINE"] == "gpu"
    if not shutil.which("nvidia-smi"):
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


@dataclass
class Recipe:
    """What the demo trains with: the model, how many lines, and the hyper-parameters."""

    model: str
    offline: bool  # the shipped reader on the CPU
    train_lines: int
    new_lines: int
    hyperparameters: HyperParameters
    max_tokens: int


def choose_recipe(model: str | None, steps: int | None) -> Recipe:
    model = model or os.environ.get("OCR_BASE_MODEL")
    if not model and not gpu_present():
        from ocrtune_devkit.reader import reader_checkpoint

        # Measured on this demo's data with the reader (2 CPU cores): lr 2e-3, alpha 32,
        # batch 8, 120 steps on 240 lines takes held-out CER from ~60% to ~10% in about
        # half a minute of training. 2e-4 (the GPU recipe's) barely moves it in that time.
        return Recipe(
            model=str(reader_checkpoint()),
            offline=True,
            train_lines=240,
            new_lines=40,
            hyperparameters=HyperParameters(
                max_steps=steps or 120,
                learning_rate=2e-3,
                alpha=32,
                warmup_steps=5,
                lr_scheduler="linear",
                per_device_batch_size=8,
                gradient_accumulation_steps=1,
                optimizer="adamw_torch",
                max_new_tokens=24,
            ),
            max_tokens=24,
        )
    # The reference notebook's recipe (its defaults are FinetuneRequest's).
    return Recipe(
        model=model or DEFAULT_BASE_MODEL,
        offline=False,
        train_lines=400,
        new_lines=40,
        hyperparameters=HyperParameters(max_steps=steps or 60, max_new_tokens=64),
        max_tokens=64,
    )


# --- data ----------------------------------------------------------------------------------
@dataclass
class HeldOut:
    """One held-out image (its text never in the training set) and its PNG."""

    text: str
    png: bytes


def build_dataset(folder: Path, recipe: Recipe, seed: int) -> tuple[Path, Path, list[HeldOut]]:
    """Write train.parquet and eval.parquet under ``folder``; return them and the held-out images."""
    from ocrtune_devkit.synthetic import SCAN, make_styled_samples, write_parquet

    folder.mkdir(parents=True, exist_ok=True)
    train = make_styled_samples(recipe.train_lines, SCAN, seed=seed)
    new = make_styled_samples(recipe.new_lines, SCAN, seed=seed + 1, exclude={s.text for s in train})
    train_path = write_parquet(train, folder / "train.parquet")
    eval_path = write_parquet(new, folder / "eval.parquet")
    return Path(train_path), Path(eval_path), [HeldOut(s.text, s.png) for s in new]


def held_out_from_parquet(uri: str) -> list[HeldOut]:
    """The user's own eval set (a local parquet with image bytes and text), for the side-by-side."""
    import pyarrow.parquet as pq

    table = pq.read_table(uri.removeprefix("file://")).to_pylist()
    items = []
    for row in table:
        image = row["image"]
        png = image["bytes"] if isinstance(image, dict) else image
        items.append(HeldOut(str(row["text"]), png))
    return items
