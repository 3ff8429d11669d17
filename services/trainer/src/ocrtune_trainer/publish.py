"""Putting a trained adapter into the store, in the layout the inference service will load.

The recipe stages the PEFT files as trained (``stage_trained_files``), measures CER on
those very files reloaded into a fresh base, converts them for serving in place
(``ocrtune_shared.families.convert_for_serving``: for the ``peft`` layout nothing changes,
so the CER "after" is that of the exact bytes served) and commits them with the manifest
(``manifest_for``) by the store's atomic rename. ``notify_inference`` then asks the
inference service to load the new version.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from ocrtune_shared.adapters import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, AdapterManifest
from ocrtune_shared.cer import CERResult
from ocrtune_shared.families import ModelFamily
from ocrtune_shared.finetune import FinetuneRequest
from ocrtune_shared.store import StoredAdapter


def stage_trained_files(adapter_dir: Path, staged: Path, base_model: str) -> None:
    """Copy the PEFT files into the staging folder, recording the base model users asked for."""
    for name in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE):
        if not (adapter_dir / name).is_file():
            raise FileNotFoundError(f"the trained adapter has no {name} in {adapter_dir}")
        shutil.copy2(adapter_dir / name, staged / name)
    config = json.loads((staged / ADAPTER_CONFIG_FILE).read_text())
    # peft records whatever path the trainer loaded; the manifest and config name the base users asked for.
    config["base_model_name_or_path"] = base_model
    (staged / ADAPTER_CONFIG_FILE).write_text(json.dumps(config, indent=2))


def manifest_for(
    request: FinetuneRequest,
    *,
    base_model: str,
    family: ModelFamily,
    job_id: str,
    dataset_fingerprint: str,
    cer_before: CERResult | None,
    cer_after: CERResult | None,
) -> AdapterManifest:
    hp = request.hyperparameters
    return AdapterManifest(
        name=request.adapter_name,
        version=1,  # the store sets the real version when it commits
        base_model=base_model,
        model_family=family.name,
        rank=hp.rank,
        alpha=hp.alpha,
        target_modules=list(hp.target_modules),
        serving_layout=family.serving_layout,
        created_at=datetime.now(timezone.utc),
        job_id=job_id,
        dataset_fingerprint=dataset_fingerprint,
        cer_before=cer_before,
        cer_after=cer_after,
    )


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
