"""The deployment files, checked offline with the real tools: hadolint on every Dockerfile,
docker-compose (v1) `config` on the compose files, kubernetes-validate on deploy/k8s; then
what those tools cannot know: the promises of the issue (GPU reservations, a shared adapter
volume the trainer writes and inference only reads, health checks, non-root images) and that
the manifests reference each other consistently.

Each tool is also shown a broken file, so a check that silently passes everything fails here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted(ROOT.glob("services/*/Dockerfile*"))
COMPOSE_FILES = [ROOT / "docker-compose.yml", ROOT / "docker-compose.cpu.yml"]
K8S_DIR = ROOT / "deploy" / "k8s"
K8S_FILES = sorted(K8S_DIR.glob("*.yaml"))


def _tool(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed; scripts/setup.sh --dev installs it")
    return found


def _run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120)


# --- Dockerfiles ------------------------------------------------------------------------
def test_every_service_has_a_dockerfile() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DOCKERFILES}
    assert {"services/inference/Dockerfile", "services/trainer/Dockerfile"} <= names


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_hadolint_passes(dockerfile: Path) -> None:
    result = _run(_tool("hadolint"), "--no-color", dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_an_unpinned_install(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN pip install requests\n")
    result = _run(_tool("hadolint"), "--no-color", bad)
    assert result.returncode != 0 and "DL3013" in result.stdout


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = dockerfile.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    parsed = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]
    last_from = max(i for i, (op, _) in enumerate(parsed) if op == "FROM")
    return parsed[last_from:]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_images_run_as_non_root_with_a_health_check(dockerfile: Path) -> None:
    final = _instructions(dockerfile)
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "final stage must switch to a non-root USER"
    health = [args for op, args in final if op == "HEALTHCHECK"]
    assert health and "/readyz" in health[-1]
    base = final[0][1].split()[0]
    assert ":" in base and not base.endswith(":latest"), f"base image {base} must be pinned to a version tag"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_weights_baked_in(dockerfile: Path) -> None:
    text = dockerfile.read_text().lower()
    for needle in ("snapshot_download", "huggingface-cli download", "hf download", "from_pretrained", ".safetensors"):
        assert needle not in text, f"{dockerfile.name} downloads or copies model weights ({needle})"


def test_build_context_sends_only_the_sources() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    # Everything is excluded first, then only the paths the Dockerfiles COPY come back.
    assert "**" in [line.strip() for line in ignore]
    copied = {
        args.split()[0]
        for df in DOCKERFILES
        for op, args in _all_instructions(df)
        if op == "COPY" and "--from" not in args
    }
    for source in copied:
        assert any(line.startswith("!") and source.rstrip("/").startswith(line[1:].rstrip("/")) for line in ignore), (
            f"COPY {source} is excluded by .dockerignore"
        )


def _all_instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = dockerfile.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


# --- compose ----------------------------------------------------------------------------
@pytest.mark.parametrize("compose", COMPOSE_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("env_file", [None, ".env.example"], ids=["defaults", "env-example"])
def test_compose_config_is_valid(compose: Path, env_file: str | None) -> None:
    args = [_tool("docker-compose"), "-f", compose]
    if env_file:
        args += ["--env-file", ROOT / env_file]
    result = _run(*args, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_rejects_an_unknown_key(tmp_path: Path) -> None:
    bad = tmp_path / "docker-compose.yml"
    bad.write_text('version: "3.8"\nservices:\n  s:\n    image: busybox:1.36\n    restartt: always\n')
    result = _run(_tool("docker-compose"), "-f", bad, "config", "-q", cwd=tmp_path)
    assert result.returncode != 0 and "restartt" in result.stderr


def _resolved(compose: Path) -> dict:
    result = _run(_tool("docker-compose"), "-f", compose, "--env-file", ROOT / ".env.example", "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _mounts(service: dict) -> dict[str, dict]:
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            volume = {"source": source, "target": target, "read_only": mode == ["ro"]}
        mounts[volume["target"]] = volume
    return mounts


@pytest.mark.parametrize("compose", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_services_share_the_adapter_store(compose: Path) -> None:
    config = _resolved(compose)
    services = config["services"]
    assert {"inference", "trainer"} <= set(services)
    assert {"adapters", "hub-cache", "job-db"} <= set(config["volumes"])
    inference, trainer = _mounts(services["inference"]), _mounts(services["trainer"])
    store_in = inference[services["inference"]["environment"]["OCRTUNE_INFERENCE_ADAPTER_STORE"]]
    store_tr = trainer[services["trainer"]["environment"]["OCRTUNE_TRAINER_ADAPTER_STORE"]]
    assert store_in["source"] == store_tr["source"] == "adapters"
    assert store_in.get("read_only") is True, "inference reads the store, never writes it"
    assert not store_tr.get("read_only"), "the trainer publishes into the store"
    assert trainer["/var/lib/ocrtune"]["source"] == "job-db"
    assert services["trainer"]["environment"]["OCRTUNE_TRAINER_DATA_DIR"] == "/var/lib/ocrtune"
    for name in ("inference", "trainer"):
        service = services[name]
        assert service["restart"] in {"always", "unless-stopped", "on-failure"}
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        assert _mounts(service)["/var/cache/huggingface"]["source"] == "hub-cache"
        assert service["environment"]["HF_HOME"] == "/var/cache/huggingface"
    # Both services must serve the same base model, or every adapter is refused as incompatible.
    assert (
        services["inference"]["environment"]["OCRTUNE_INFERENCE_MODEL"]
        == services["trainer"]["environment"]["OCRTUNE_TRAINER_BASE_MODEL"]
    )


def test_gpu_compose_reserves_an_nvidia_gpu_per_service() -> None:
    services = _resolved(ROOT / "docker-compose.yml")["services"]
    for name in ("inference", "trainer"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), name


def test_cpu_compose_reserves_no_gpu() -> None:
    services = _resolved(ROOT / "docker-compose.cpu.yml")["services"]
    for name, service in services.items():
        assert "devices" not in service.get("deploy", {}).get("resources", {}).get("reservations", {}), name
    assert services["inference"]["build"]["dockerfile"].endswith("Dockerfile.cpu")


def test_env_example_names_only_variables_the_compose_files_use() -> None:
    used = "\n".join(p.read_text() for p in COMPOSE_FILES)
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name = line.split("=", 1)[0]
            assert "${" + name in used, f".env.example sets {name}, which no compose file reads"


# --- Kubernetes ---------------------------------------------------------------------------
def test_kubernetes_manifests_validate_against_their_schemas() -> None:
    assert K8S_FILES
    result = _run(_tool("kubernetes-validate"), "--strict", "--quiet", *K8S_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_validate_rejects_a_broken_manifest(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
        "spec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n"
        "    spec:\n      containers:\n        - name: c\n          image: busybox:1.36\n          replica: 2\n"
    )
    result = _run(_tool("kubernetes-validate"), "--strict", "--quiet", bad)
    assert result.returncode != 0


def _k8s_objects() -> list[dict]:
    return [doc for path in K8S_FILES for doc in yaml.safe_load_all(path.read_text()) if doc]


def _find(kind: str, name: str) -> dict:
    matches = [o for o in _k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def test_inference_deployment_requests_a_gpu_and_is_ready_on_readyz() -> None:
    deployment = _find("Deployment", "ocrtune-inference")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["adapters"].get("readOnly") is True


def test_trainer_has_an_api_and_gpu_workers_on_postgres() -> None:
    api = _find("Deployment", "ocrtune-trainer")["spec"]["template"]["spec"]["containers"][0]
    worker = _find("Deployment", "ocrtune-trainer-worker")["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in api["resources"].get("requests", {})
    assert worker["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert {"name": "OCRTUNE_TRAINER_RUN_WORKER", "value": "false"} in api["env"]
    _find("StatefulSet", "ocrtune-postgres")
    url = _find("Secret", "ocrtune-secrets")["stringData"]["OCRTUNE_TRAINER_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://") and "@ocrtune-postgres:" in url
    assert _find("PersistentVolumeClaim", "ocrtune-adapters")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_kubernetes_references_resolve() -> None:
    """Every ConfigMap/Secret/PVC/Service a workload names exists, and every Service selects pods."""
    objects = _k8s_objects()
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    pod_labels = []
    for obj in objects:
        if obj["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        spec = obj["spec"]["template"]["spec"]
        pod_labels.append(obj["spec"]["template"]["metadata"]["labels"])
        assert obj["spec"]["selector"]["matchLabels"].items() <= pod_labels[-1].items()
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert ("ConfigMap", source["configMapRef"]["name"]) in names
                if "secretRef" in source:
                    assert ("Secret", source["secretRef"]["name"]) in names
            for env in container.get("env", []):
                ref = env.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    secret = _find("Secret", ref["secretKeyRef"]["name"])
                    assert ref["secretKeyRef"]["key"] in secret["stringData"], ref
                if "configMapKeyRef" in ref:
                    config = _find("ConfigMap", ref["configMapKeyRef"]["name"])
                    assert ref["configMapKeyRef"]["key"] in config["data"], ref
    for obj in objects:
        if obj["kind"] == "Service":
            selector = obj["spec"]["selector"]
            assert any(selector.items() <= labels.items() for labels in pod_labels), obj["metadata"]["name"]
        if obj["kind"] == "Ingress":
            for rule in obj["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    assert ("Service", path["backend"]["service"]["name"]) in names


def test_ingress_routes_an_adapter_to_the_same_replica() -> None:
    annotations = _find("Ingress", "ocrtune-inference")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/upstream-hash-by"] == "$http_x_adapter"
