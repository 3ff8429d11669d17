"""Trainer test fixtures: datasets in every layout, a real service over HTTP, moto S3, PostgreSQL.

Services run as real subprocesses (``python -m ocrtune_trainer``) on 127.0.0.1 in their
own process group, and are killed by group so the worker never outlives a test.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from ocrtune_devkit import processes
from ocrtune_devkit.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
HF_REPO = "ocrtune/synthetic-zh"
HF_COMMIT = "0123456789abcdef0123456789abcdef01234567"
S3_BUCKET = "datasets"


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """One signal to the whole group (a crash, when SIGKILL), then the leader reaped; stopping a
    service for good is ``processes.stop_process_group``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


# --------------------------------------------------------------------------- data


@dataclass
class DataLayouts:
    root: Path
    """The trainer's allowed data root."""
    samples: list
    paths: dict[str, Path] = field(default_factory=dict)


def _write_manifests(samples: list, folder: Path) -> None:
    from ocrtune_devkit.synthetic import write_image_folder

    write_image_folder(samples, folder)
    (folder / "labels.tsv").unlink()
    with open(folder / "manifest.jsonl", "w", encoding="utf-8") as handle:
        for i, s in enumerate(samples):
            handle.write(json.dumps({"file": f"images/{i:06d}.png", "label": s.text}, ensure_ascii=False) + "\n")


def _zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, Path(folder.name) / path.relative_to(folder))
    return target


def _tar_folder(folder: Path, target: Path) -> Path:
    with tarfile.open(target, "w:gz") as tf:
        tf.add(folder, arcname=folder.name)
    return target


@pytest.fixture(scope="session")
def data_layouts(tmp_path_factory: pytest.TempPathFactory, synthetic_samples: list) -> DataLayouts:
    """The same 8 samples in every layout users bring, plus broken datasets, under one data root."""
    from ocrtune_devkit.synthetic import write_hf_disk, write_image_folder, write_parquet

    root = tmp_path_factory.mktemp("data")
    samples = synthetic_samples[:8]
    d = DataLayouts(root=root, samples=samples)
    d.paths["parquet"] = write_parquet(samples, root / "parquet" / "train.parquet")
    d.paths["image_folder"] = write_image_folder(samples, root / "image_folder")
    d.paths["hf_disk"] = write_hf_disk(samples, root / "hf_disk")
    jsonl = root / "jsonl"
    _write_manifests(samples, jsonl)
    d.paths["jsonl"] = jsonl / "manifest.jsonl"
    csv_dir = root / "csv"
    write_image_folder(samples, csv_dir)
    (csv_dir / "labels.tsv").unlink()
    lines = ["path,text"] + [f"images/{i:06d}.png,{s.text}" for i, s in enumerate(samples)]
    (csv_dir / "data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    d.paths["csv"] = csv_dir / "data.csv"
    d.paths["zip"] = _zip_folder(d.paths["image_folder"], root / "image_folder.zip")
    d.paths["tar"] = _tar_folder(d.paths["hf_disk"], root / "hf_disk.tar.gz")

    # Broken ones: each names a row or file in its error.
    bad_images = root / "bad_images"
    write_image_folder(samples[:4], bad_images)
    (bad_images / "images" / "000002.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    d.paths["corrupt_image"] = bad_images
    empty_text = root / "empty_text" / "train.parquet"
    from ocrtune_shared.image_parquet import write_image_parquet

    rows = [(s.png, f"{i}.png", s.text) for i, s in enumerate(samples[:4])]
    rows[3] = (rows[3][0], rows[3][1], "   ")
    write_image_parquet(rows, empty_text)
    d.paths["empty_text"] = empty_text
    evil = root / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("data/labels.tsv", "images/0.png\t一二\n")
        zf.writestr("data/images/0.png", samples[0].png)
        zf.writestr("../../escaped.txt", "gotcha")
    d.paths["evil_zip"] = evil
    evil_tar = root / "evil.tar"
    with tarfile.open(evil_tar, "w") as tf:
        info = tarfile.TarInfo("../outside.png")
        info.size = len(samples[0].png)
        tf.addfile(info, io.BytesIO(samples[0].png))
    d.paths["evil_tar"] = evil_tar
    return d


@pytest.fixture(scope="session")
def hf_cache(tmp_path_factory: pytest.TempPathFactory, data_layouts: DataLayouts) -> Path:
    """A hub cache holding a dataset repo the way huggingface_hub lays it out, for HF_HUB_OFFLINE=1."""
    cache = tmp_path_factory.mktemp("hf-cache")
    repo = cache / f"datasets--{HF_REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / HF_COMMIT
    (snapshot / "data").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(HF_COMMIT)
    shutil.copy(data_layouts.paths["parquet"], snapshot / "data" / "train-00000-of-00001.parquet")
    shutil.copy(data_layouts.paths["parquet"], snapshot / "data" / "test-00000-of-00001.parquet")
    return cache


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def http_server(data_layouts: DataLayouts) -> Iterator[str]:
    """A plain HTTP file server on 127.0.0.1 over the data root (404 for anything missing)."""
    handler = functools.partial(_QuietHandler, directory=str(data_layouts.root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_server(moto_s3: str, data_layouts: DataLayouts) -> str:
    """The session's moto S3 server, with the parquet and the image folder uploaded."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket=S3_BUCKET)
    s3.upload_file(str(data_layouts.paths["parquet"]), S3_BUCKET, "zh/train.parquet")
    folder = data_layouts.paths["image_folder"]
    for path in folder.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), S3_BUCKET, f"folder/{path.relative_to(folder)}")
    return moto_s3


# --------------------------------------------------------------------------- the service


@dataclass
class TrainerService:
    url: str
    process: subprocess.Popen
    data_dir: Path
    store: Path
    log: Path

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def submit(self, body: dict) -> dict:
        with self.client() as client:
            response = client.post("/finetune", json=body)
        assert response.status_code == 202, response.text
        return response.json()

    def job(self, job_id: str) -> dict:
        with self.client() as client:
            response = client.get(f"/finetune/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, job_id: str, states: set[str], timeout: float = 240.0, predicate=None) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["state"] in states and (predicate is None or predicate(job)):
                return job
            if job["state"] in {"succeeded", "failed", "cancelled"} and job["state"] not in states:
                raise AssertionError(f"job ended {job['state']}, expected {states}: {job.get('error')}\n{self.tail()}")
            time.sleep(0.2)
        raise TimeoutError(f"job {job_id} not in {states} after {timeout} s: {self.job(job_id)}\n{self.tail()}")

    def worker_pid(self) -> int:
        with self.client() as client:
            return client.get("/readyz").json()["worker"]["pid"]

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def start_service(
    data_dir: Path,
    *,
    base_model: Path,
    data_roots: list[Path],
    extra_env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> TrainerService:
    port = free_port()
    store = data_dir / "adapters"
    env = {
        **os.environ,
        "OCRTUNE_TRAINER_BASE_MODEL": str(base_model),
        "OCRTUNE_TRAINER_DATA_DIR": str(data_dir),
        "OCRTUNE_TRAINER_ADAPTER_STORE": str(store),
        "OCRTUNE_TRAINER_DATA_ROOTS": ",".join(str(r) for r in data_roots),
        "OCRTUNE_TRAINER_HOST": "127.0.0.1",
        "OCRTUNE_TRAINER_PORT": str(port),
        # One thread: on 2 shared cores, two torch threads spin against each other (8x slower, measured).
        "OCRTUNE_TRAINER_TORCH_THREADS": "1",
        "OCRTUNE_TRAINER_POLL_INTERVAL_S": "0.2",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **(extra_env or {}),
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "service.log"
    started = processes.start_service(
        "trainer", [sys.executable, "-m", "ocrtune_trainer"], url=f"http://127.0.0.1:{port}", env=env, log=log, cwd=ROOT
    )
    try:
        processes.wait_until_ready([started], timeout=timeout, poll_s=0.2)
    except BaseException:
        started.stop(grace_s=0)
        raise
    return TrainerService(started.url, started.process, data_dir, store, log)


class _LoadRecorder(http.server.BaseHTTPRequestHandler):
    """Stands in for the inference service's ``POST /adapters/{name}@{version}/load``: records the
    path and the Authorization header it is sent (tests/e2e talks to the real service)."""

    calls: list[tuple[str, str | None]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        type(self).calls.append((self.path, self.headers.get("authorization")))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"state": "device"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def inference_recorder() -> Iterator[tuple[str, list]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LoadRecorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _LoadRecorder.calls
    server.shutdown()


@pytest.fixture(scope="session")
def service_env(hf_cache: Path, s3_server: str, inference_recorder: tuple[str, list]) -> dict[str, str]:
    return {
        **S3_ENV,
        "HF_HUB_CACHE": str(hf_cache),
        "OCRTUNE_TRAINER_S3_ENDPOINT_URL": s3_server,
        "OCRTUNE_TRAINER_INFERENCE_URL": inference_recorder[0],
        "OCRTUNE_TRAINER_INFERENCE_API_KEY": "inference-key",
        # The tests' dataset servers listen on 127.0.0.1, refused unless private networks are allowed.
        "OCRTUNE_TRAINER_ALLOW_PRIVATE_URLS": "true",
    }


@pytest.fixture(scope="session")
def trainer(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, data_layouts: DataLayouts, service_env: dict
) -> Iterator[TrainerService]:
    service = start_service(
        tmp_path_factory.mktemp("trainer"),
        base_model=tiny_model_dir,
        data_roots=[data_layouts.root],
        extra_env=service_env,
    )
    yield service
    processes.stop_process_group(service.process)


def tiny_hyperparameters(**overrides: object) -> dict:
    """Settings that make a job take seconds on the tiny model."""
    return {
        "max_steps": 3,
        "warmup_steps": 0,
        "per_device_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "learning_rate": 2e-3,
        "max_new_tokens": 12,
        "optimizer": "adamw_torch",
        **overrides,
    }


# --------------------------------------------------------------------------- PostgreSQL

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's PostgreSQL 15 in a temp folder on a free 127.0.0.1 port, run as the postgres user."""
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        pytest.skip(f"PostgreSQL 15 binaries not found in {PG_BIN} (apt-get install postgresql)")
    # Not under pytest's temp root: other pytest sessions reset it to 0700, which locks the postgres user out.
    base = Path(tempfile.mkdtemp(prefix="ocrtune-pg-"))
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        import pwd

        owner = pwd.getpwnam("postgres")
        for path in (base, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [*as_postgres, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [
            *as_postgres,
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(base / "pg.log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        # SIGQUIT is PostgreSQL's immediate shutdown; the server we started, by its own pid.
        with contextlib.suppress(ProcessLookupError):
            os.kill(postmaster, signal.SIGQUIT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists(f"/proc/{postmaster}"):
            time.sleep(0.1)
        shutil.rmtree(base, ignore_errors=True)
