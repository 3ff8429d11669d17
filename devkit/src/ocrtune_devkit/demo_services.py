"""The demo's two services: started on 127.0.0.1 in process groups of their own, recorded in
``<workdir>/services.json`` so that ``demo stop`` (another process, later) ends them."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ocrtune_devkit.demo_recipe import Recipe
from ocrtune_devkit.processes import ServiceProcess, free_port, start_service, stop_process_group, wait_until_ready

STATE_FILE = "services.json"
READY_TIMEOUT_S = 600.0


@dataclass
class RunningServices:
    inference: ServiceProcess
    trainer: ServiceProcess
    model: str
    workdir: str
    started_at: float = field(default_factory=time.time)

    def record(self) -> dict[str, object]:
        return {
            "inference": self.inference.record(),
            "trainer": self.trainer.record(),
            "model": self.model,
            "workdir": self.workdir,
            "started_at": self.started_at,
        }


def start_services(workdir: Path, recipe: Recipe, data_roots: list[Path], ports: tuple[int, int]) -> RunningServices:
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    store = workdir / "adapters"
    store.mkdir(parents=True, exist_ok=True)
    inference_port, trainer_port = free_port(ports[0]), free_port(ports[1])
    if trainer_port == inference_port:
        trainer_port = free_port(0)
    inference_url = f"http://127.0.0.1:{inference_port}"
    trainer_url = f"http://127.0.0.1:{trainer_port}"
    base_env = dict(os.environ)
    if recipe.offline:
        base_env["HF_HUB_OFFLINE"] = "1"
    base_env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # vLLM's CPU backend would reserve far more KV cache than a laptop spares.
    base_env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    inference_env = {
        **base_env,
        "OCRTUNE_INFERENCE_MODEL": recipe.model,
        "OCRTUNE_INFERENCE_ADAPTER_STORE": str(store),
        "OCRTUNE_INFERENCE_HOST": "127.0.0.1",
        "OCRTUNE_INFERENCE_PORT": str(inference_port),
        "OCRTUNE_INFERENCE_MAX_LORA_RANK": str(max(16, recipe.hyperparameters.rank)),
    }
    if recipe.offline:
        inference_env.setdefault("OCRTUNE_INFERENCE_DTYPE", "float32")
        inference_env.setdefault("OCRTUNE_INFERENCE_MAX_MODEL_LEN", "512")
    trainer_env = {
        **base_env,
        "OCRTUNE_TRAINER_BASE_MODEL": recipe.model,
        "OCRTUNE_TRAINER_ADAPTER_STORE": str(store),
        "OCRTUNE_TRAINER_DATA_DIR": str(workdir / "trainer"),
        "OCRTUNE_TRAINER_DATABASE_URL": f"sqlite:///{workdir / 'jobs.db'}",
        "OCRTUNE_TRAINER_DATA_ROOTS": ",".join(str(p) for p in data_roots),
        "OCRTUNE_TRAINER_HOST": "127.0.0.1",
        "OCRTUNE_TRAINER_PORT": str(trainer_port),
        "OCRTUNE_TRAINER_INFERENCE_URL": inference_url,
    }
    processes = [
        # A session of its own: the services outlive the demo, and `stop` can end each
        # one with its whole group (vLLM's engine and worker processes included).
        start_service(name, [sys.executable, "-m", f"ocrtune_{name}"], url=url, env=env, log=logs / f"{name}.log",
                      cwd=workdir)
        for name, env, url in (("inference", inference_env, inference_url), ("trainer", trainer_env, trainer_url))
    ]
    services = RunningServices(processes[0], processes[1], model=recipe.model, workdir=str(workdir))
    (workdir / STATE_FILE).write_text(json.dumps(services.record(), indent=2))
    return services


def wait_ready(services: RunningServices, timeout: float = READY_TIMEOUT_S) -> float:
    """Wait for both /readyz, saying which is ready when; fail with the log's tail as soon as a service dies."""
    return wait_until_ready(
        [services.inference, services.trainer],
        timeout=timeout,
        on_ready=lambda service, seconds: print(f"  {service.name} ready at {service.url} ({seconds:.0f} s)"),
    )


def stop_services(workdir: Path, grace_s: float = 20.0) -> list[str]:
    """Stop the services a demo started in ``workdir`` (each process group: TERM, then KILL)."""
    state_path = workdir / STATE_FILE
    if not state_path.exists():
        return []
    state = json.loads(state_path.read_text())
    stopped = []
    for name in ("trainer", "inference"):
        pid = state[name]["pid"]
        if stop_process_group(pid, grace_s):
            stopped.append(f"{name} (pid {pid})")
    state_path.unlink()
    return stopped
