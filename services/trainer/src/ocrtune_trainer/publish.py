"""Publishing a trained adapter to the store, the way the inference service will load it.

Order inside the store's hidden staging folder (``AdapterStore.publish``):
1. copy the PEFT files (``adapter_config.json``, ``adapter_model.safetensors``);
2. evaluate: reload those very files into a fresh base model and measure CER;
3. convert them for serving, per model family (``SERVING_CONVERSIONS``);
4. the store writes the manifest with checksums and renames the folder into place.

For the ``peft`` layout (Qwen2-VL and other families vLLM maps as they are) step 3
changes nothing, so the CER "after" comes from the exact bytes that are served.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from ocrtune_shared.adapters import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, AdapterManifest, ServingLayout
from ocrtune_shared.cer import CERResult
from ocrtune_shared.store import AdapterStore, StoredAdapter
from ocrtune_trainer import deepseek_ocr

log = logging.getLogger(__name__)

SERVING_CONVERSIONS: dict[str, Callable[[Path], ServingLayout]] = dict.fromkeys(
    deepseek_ocr.MODEL_FAMILIES, deepseek_ocr.convert_in_place
)
"""model_type -> a function that rewrites the adapter files in a folder for vLLM and says the layout.

Families missing here are served as saved (``ServingLayout.peft``). DeepSeek-OCR's entry
renames the language-model keys that vLLM's mapper does not know (models.md).
"""


def convert_for_serving(model_family: str, folder: Path) -> ServingLayout:
    conversion = SERVING_CONVERSIONS.get(model_family)
    return conversion(folder) if conversion else ServingLayout.peft


def _copy_adapter(source: Path, target: Path, base_model: str) -> None:
    for name in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE):
        if not (source / name).is_file():
            raise FileNotFoundError(f"the trained adapter has no {name} in {source}")
        shutil.copy2(source / name, target / name)
    config = json.loads((target / ADAPTER_CONFIG_FILE).read_text())
    # peft records whatever path the trainer loaded; the manifest and config name the base users asked for.
    config["base_model_name_or_path"] = base_model
    (target / ADAPTER_CONFIG_FILE).write_text(json.dumps(config, indent=2))


def publish_adapter(
    store: AdapterStore,
    *,
    name: str,
    adapter_dir: Path,
    base_model: str,
    model_family: str,
    rank: int,
    alpha: int,
    target_modules: list[str],
    job_id: str,
    dataset_fingerprint: str,
    cer_before: CERResult | None,
    evaluate_files: Callable[[Path], CERResult],
    export_merged: Callable[[Path], None] | None = None,
) -> tuple[StoredAdapter, AdapterManifest]:
    """Write, evaluate, convert and atomically publish a new version of ``name``."""

    def write(staging: Path) -> AdapterManifest:
        _copy_adapter(adapter_dir, staging, base_model)
        cer_after = evaluate_files(staging)
        if export_merged is not None:
            export_merged(staging / "merged")
        layout = convert_for_serving(model_family, staging)
        return AdapterManifest(
            name=name,
            version=1,  # the store sets the real version at rename time
            base_model=base_model,
            model_family=model_family,
            rank=rank,
            alpha=alpha,
            target_modules=target_modules,
            serving_layout=layout,
            created_at=datetime.now(timezone.utc),
            job_id=job_id,
            dataset_fingerprint=dataset_fingerprint,
            cer_before=cer_before,
            cer_after=cer_after,
        )

    stored = store.publish(name, write)
    return stored, store.verify(stored)


def notify_inference(
    inference_url: str | None, stored: StoredAdapter, *, api_key: str | None = None, timeout: float = 30.0
) -> str | None:
    """Ask the inference service to load the new version now; returns a note if that failed.

    The version is named in the path (``name@version``), the one form its load route reads.
    Best effort: the inference service also finds new versions in the store by itself.
    """
    if not inference_url:
        return None
    import httpx

    url = f"{inference_url.rstrip('/')}/adapters/{stored.ref}/load"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.post(url, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return f"could not tell the inference service at {url}: {exc}"
    if response.status_code >= 400:
        return f"the inference service answered {response.status_code} to {url}: {response.text[:300]}"
    return None
