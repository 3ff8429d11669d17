"""Services run as child processes: the demo's, the tests' and the benchmarks'.

Each service starts in a session of its own, so that its pid is also its process
group's id: stopping it stops the whole group (vLLM's engine core and workers, the
trainer's worker), and it may outlive the process that started it (the demo leaves
its services running; ``stop`` finds them again by pid). It is ready when
``GET /readyz`` answers 200; one that exits while starting fails at once, with the
end of its log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ocrtune_shared.processes import process_alive

HOST = "127.0.0.1"


def free_port(preferred: int = 0) -> int:
    """``preferred`` if nothing listens there, else a free port of 127.0.0.1 the OS gives."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # What a server binding the port right after us sets too, so a port left in
            # TIME_WAIT by an earlier run still counts as free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError(f"no free port on {HOST}")


@dataclass
class ServiceProcess:
    """A service running in its own process group; ``pid`` is the group's leader and id."""

    name: str
    pid: int
    url: str
    log: str | None = None
    # Only in the process that started it: keeps the exit status, and reaps the leader.
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def record(self) -> dict[str, object]:
        """What a later process needs to find it again (the demo's ``services.json``)."""
        return {"name": self.name, "pid": self.pid, "url": self.url, "log": self.log}

    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return process_alive(self.pid, reap_child=True)

    def exit_status(self) -> str:
        code = self.process.returncode if self.process is not None else None
        return "exited" if code is None else f"exited with {code}"

    def log_tail(self, lines: int = 30) -> str:
        if self.log is None:
            return ""
        try:
            return "".join(Path(self.log).read_text(errors="replace").splitlines(keepends=True)[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 20.0) -> bool:
        return stop_process_group(self.process if self.process is not None else self.pid, grace_s)


def start_service(
    name: str,
    command: Sequence[str],
    *,
    url: str,
    env: Mapping[str, str],
    log: Path | None,
    cwd: Path | None = None,
) -> ServiceProcess:
    """Start ``command`` in a session of its own, its output appended to ``log`` (None: dropped)."""
    out = open(log, "ab") if log is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log is not None:
            out.close()
    return ServiceProcess(name=name, pid=process.pid, url=url, log=str(log) if log else None, process=process)


def answers_ready(url: str, ready_path: str = "/readyz") -> bool:
    try:
        return httpx.get(f"{url}{ready_path}", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


class ServiceExited(RuntimeError):
    """A service exited before it was ready."""


def wait_until_ready(
    services: Sequence[ServiceProcess],
    *,
    timeout: float,
    poll_s: float = 0.5,
    ready_path: str = "/readyz",
    on_ready: Callable[[ServiceProcess, float], None] | None = None,
) -> float:
    """Wait until every service answers ``ready_path`` with 200; return the seconds it took.

    ``on_ready`` is told of each service as it becomes ready (seconds since the wait began).
    A service that exits meanwhile raises ``ServiceExited`` with the end of its log; one
    still not ready after ``timeout`` s raises ``TimeoutError``. Neither stops the others:
    that is the caller's to decide.
    """
    start = time.monotonic()
    pending = list(services)
    while pending:
        for service in list(pending):
            if answers_ready(service.url, ready_path):
                pending.remove(service)
                if on_ready is not None:
                    on_ready(service, time.monotonic() - start)
            elif not service.running():
                where = f"; end of {service.log}:\n{service.log_tail()}" if service.log else ""
                raise ServiceExited(f"the {service.name} service {service.exit_status()} while starting{where}")
        if pending and time.monotonic() - start > timeout:
            logs = ", ".join(s.log for s in pending if s.log)
            raise TimeoutError(
                f"not ready after {timeout:.0f} s: {', '.join(s.name for s in pending)}"
                + (f" (logs: {logs})" if logs else "")
            )
        if pending:
            time.sleep(poll_s)
    return time.monotonic() - start


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies, which only wait to be reaped, do not count)."""
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                # Fields after the parenthesised command name: state, ppid, pgrp, ...
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(leader: subprocess.Popen[bytes] | int, grace_s: float = 20.0) -> bool:
    """SIGTERM to the whole group, up to ``grace_s`` s for all of it to exit, then SIGKILL to what is left.

    False when the group had already gone.
    """
    pgid = leader if isinstance(leader, int) else leader.pid

    def reap() -> None:
        # The leader, if it is our child, stays a zombie (and in the group) until reaped.
        if isinstance(leader, int):
            process_alive(leader, reap_child=True)
        else:
            leader.poll()

    # Zombies count as gone: an orphan the container's init never reaps still takes signals.
    if not group_alive(pgid):
        reap()
        return False
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        reap()
        return False
    # Wait for the whole group: vLLM's engine and workers may outlive the leader a while.
    deadline = time.monotonic() + grace_s
    while group_alive(pgid) and time.monotonic() < deadline:
        reap()
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if not isinstance(leader, int):
        leader.wait(timeout=10)
    return True
