"""The worker process beside the API: started with it, restarted when it dies, killed with it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from ocrtune_shared.processes import die_with_parent
from ocrtune_trainer.job_leases import JobLeases, this_worker_id
from ocrtune_trainer.job_store import JobStore
from ocrtune_trainer.settings import TrainerSettings

log = logging.getLogger("ocrtune_trainer.supervisor")


class WorkerSupervisor:
    """Runs the worker process beside the API and restarts it when it dies.

    When the worker exits, the jobs it was running are queued again to resume from their
    last checkpoint, or failed with the exit reason (signal 9 is what the OOM killer sends),
    before a new worker is started.
    """

    def __init__(self, settings: TrainerSettings, jobs: JobStore, on_restart: Any = None) -> None:
        self.settings = settings
        self.leases = JobLeases(jobs)
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self.on_restart = on_restart
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        self._thread.start()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "ocrtune_trainer.worker"],
            env={**os.environ, **_settings_env(self.settings)},
            preexec_fn=die_with_parent,  # the kernel sends SIGTERM to the worker if the API dies
        )

    def _supervise(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            started = time.monotonic()
            self.process = self._spawn()
            code = self.process.wait()
            if self._stopping.is_set():
                break
            reason = describe_exit(self.process.pid, code)
            log.error("%s; restarting it", reason)
            try:
                self.leases.recover_orphans(dead_worker=this_worker_id(self.process.pid), reason=reason,
                                            max_resumes=self.settings.max_resumes)
            except Exception:
                log.exception("could not mark the dead worker's jobs failed")
            self.restarts += 1
            if self.on_restart is not None:
                self.on_restart()
            backoff = 1.0 if time.monotonic() - started > 60 else min(backoff * 2, 30.0)
            self._stopping.wait(backoff)

    def stop(self, timeout: float = 15.0) -> None:
        self._stopping.set()
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._thread.join(timeout=5)


def describe_exit(pid: int, code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory, or killed)" if -code == signal.SIGKILL else ""
        return f"worker process {pid} was killed by {name}{hint}"
    return f"worker process {pid} exited with status {code}"


def _settings_env(settings: TrainerSettings) -> dict[str, str]:
    """The settings as OCRTUNE_TRAINER_* variables, so a settings object given to create_app reaches the worker."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        env[f"OCRTUNE_TRAINER_{name.upper()}"] = str(value)
    return env
