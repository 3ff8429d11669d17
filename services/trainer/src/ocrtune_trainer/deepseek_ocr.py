"""DeepSeek-OCR (v1, v2) in the trainer: the adapter conversion run at publish time.

Training happens on transformers' native ``DeepseekOcr2ForConditionalGeneration``; its
adapters name modules ``model.language_model.layers.N...``, which vLLM's DeepSeek-OCR
mapper does not know (the adapter would load and do nothing). ``convert_in_place``
rewrites the staged adapter files to the names vLLM maps, splitting routed-expert LoRA
(peft ``target_parameters``) into vLLM's per-expert layout; the logic is shared with the
inference service's import path (``ocrtune_shared.adapter_layouts``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ocrtune_shared.adapter_layouts import convert_adapter_folder
from ocrtune_shared.adapters import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, ServingLayout

MODEL_FAMILIES = ("deepseek_ocr2", "deepseek_ocr")
"""``model_type`` values of the checkpoints this conversion serves (native v2; v1 original layout)."""


def convert_in_place(folder: Path) -> ServingLayout:
    """Rewrite the PEFT files in ``folder`` for vLLM; raises ``AdapterLayoutError`` naming unservable modules."""
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        report = convert_adapter_folder(folder, Path(scratch))
        for name in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE):
            shutil.move(str(Path(scratch) / name), folder / name)
    return report.serving_layout
