"""Import a PEFT adapter trained elsewhere (the reference notebook) into the adapter store, servable unmerged.

The notebook saves a PEFT folder whose ``base_model_name_or_path`` is a local folder
(``./deepseek_ocr``) and whose routed-expert LoRA is peft ``target_parameters`` on fused
experts; vLLM serves neither as is. The user names the base model; the adapter is
converted (``adapter_layouts``) and published with a manifest recording the layout.

CLI::

    python -m ocrtune_shared.adapter_import ./lora_model --store /data/adapters \\
        --name persian-ocr --base-model deepseek-ai/DeepSeek-OCR --family deepseek_ocr

The inference service's upload endpoint can call ``import_peft_adapter`` on an unpacked
upload the same way.
"""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from ocrtune_shared.adapter_layouts import convert_adapter_folder
from ocrtune_shared.adapters import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, AdapterManifest, ServingLayout
from ocrtune_shared.store import AdapterStore, StoredAdapter

CONVERTED_FAMILIES = frozenset({"deepseek_ocr", "deepseek_ocr2"})
"""Families whose adapters are rewritten for vLLM; others are stored as saved (``ServingLayout.peft``)."""


def import_peft_adapter(
    store: AdapterStore, source: Path | str, *, name: str, base_model: str, model_family: str
) -> StoredAdapter:
    """Convert (where the family needs it) and publish the PEFT folder ``source`` as a new version of ``name``.

    Raises ``AdapterLayoutError`` naming the modules vLLM cannot serve (vision towers, ...).
    """
    source = Path(source)
    config = json.loads((source / ADAPTER_CONFIG_FILE).read_text())

    def write(staging: Path) -> AdapterManifest:
        if model_family in CONVERTED_FAMILIES:
            report = convert_adapter_folder(source, staging, base_model=base_model)
            layout, targets = report.serving_layout, report.target_modules
        else:
            for file in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE):
                shutil.copy2(source / file, staging / file)
            staged = json.loads((staging / ADAPTER_CONFIG_FILE).read_text())
            staged["base_model_name_or_path"] = base_model
            (staging / ADAPTER_CONFIG_FILE).write_text(json.dumps(staged, indent=2))
            layout = ServingLayout.peft
            modules = config.get("target_modules") or []
            targets = sorted(modules) if isinstance(modules, list) else [modules]
        return AdapterManifest(
            name=name,
            version=1,  # set by the store
            base_model=base_model,
            model_family=model_family,
            rank=int(config["r"]),
            alpha=int(config.get("lora_alpha") or config["r"]),
            target_modules=targets,
            serving_layout=layout,
            created_at=datetime.now(timezone.utc),
        )

    return store.publish(name, write)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ocrtune_shared.adapter_import", description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="PEFT folder (adapter_config.json + adapter_model.safetensors)")
    parser.add_argument("--store", type=Path, required=True, help="adapter store root")
    parser.add_argument("--name", required=True)
    parser.add_argument("--base-model", required=True, help="the model the adapter was trained on (hub id or path)")
    parser.add_argument("--family", required=True, help="deepseek_ocr, deepseek_ocr2, qwen2_vl, ...")
    args = parser.parse_args(argv)
    stored = import_peft_adapter(
        AdapterStore(args.store), args.source, name=args.name, base_model=args.base_model, model_family=args.family
    )
    print(stored.ref)


if __name__ == "__main__":
    main()
