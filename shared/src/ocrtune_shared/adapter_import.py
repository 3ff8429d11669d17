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
from datetime import datetime, timezone
from pathlib import Path

from ocrtune_shared.adapters import ADAPTER_CONFIG_FILE, AdapterManifest
from ocrtune_shared.families import FAMILY_NAMES, convert_for_serving, family_named
from ocrtune_shared.store import AdapterStore, StoredAdapter


def import_peft_adapter(
    store: AdapterStore, source: Path | str, *, name: str, base_model: str, model_family: str
) -> StoredAdapter:
    """Convert (where the family needs it) and publish the PEFT folder ``source`` as a new version of ``name``.

    Raises ``AdapterLayoutError`` naming the modules vLLM cannot serve (vision towers, ...),
    ``LookupError`` for a family no service knows.
    """
    source = Path(source)
    family = family_named(model_family)
    config = json.loads((source / ADAPTER_CONFIG_FILE).read_text())
    with store.stage(name) as staged:
        targets = convert_for_serving(family, source, staged.path, base_model=base_model)
        return store.commit(staged, AdapterManifest(
            name=name,
            version=1,  # set by the store
            base_model=base_model,
            model_family=family.name,
            rank=int(config["r"]),
            alpha=int(config.get("lora_alpha") or config["r"]),
            target_modules=targets,
            serving_layout=family.serving_layout,
            created_at=datetime.now(timezone.utc),
        ))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ocrtune_shared.adapter_import", description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="PEFT folder (adapter_config.json + adapter_model.safetensors)")
    parser.add_argument("--store", type=Path, required=True, help="adapter store root")
    parser.add_argument("--name", required=True)
    parser.add_argument("--base-model", required=True, help="the model the adapter was trained on (hub id or path)")
    parser.add_argument("--family", required=True, choices=FAMILY_NAMES)
    args = parser.parse_args(argv)
    stored = import_peft_adapter(
        AdapterStore(args.store), args.source, name=args.name, base_model=args.base_model, model_family=args.family
    )
    print(stored.ref)


if __name__ == "__main__":
    main()
