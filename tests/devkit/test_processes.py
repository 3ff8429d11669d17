"""``ocrtune_devkit.processes`` with real processes: a plain HTTP server stands in for a service."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from ocrtune_devkit.processes import (
    ServiceExited,
    free_port,
    group_alive,
    start_service,
    stop_process_group,
    wait_until_ready,
)

# A service with a child of its own (as vLLM's engine core is), ready once it serves /readyz.
SERVICE = """
import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
import http.server, functools
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
"""


def test_ready_over_http_then_stopped_with_its_whole_group(tmp_path: Path) -> None:
    (tmp_path / "readyz").write_text("ok")
    port = free_port()
    service = start_service(
        "toy",
        [sys.executable, "-c", SERVICE, str(port), str(tmp_path)],
        url=f"http://127.0.0.1:{port}",
        env=os.environ,
        log=tmp_path / "toy.log",
    )
    try:
        seen = []
        wait_until_ready([service], timeout=30, poll_s=0.1, on_ready=lambda s, seconds: seen.append(s.name))
        assert seen == ["toy"] and group_alive(service.pid)
        assert service.record() == {"name": "toy", "pid": service.pid, "url": service.url, "log": service.log}
    finally:
        assert service.stop(grace_s=10)
    assert not group_alive(service.pid), "the service's child outlived it"
    assert not stop_process_group(service.pid), "a group already gone is not stopped twice"


def test_a_service_that_exits_while_starting_fails_with_its_log(tmp_path: Path) -> None:
    service = start_service(
        "broken",
        [sys.executable, "-c", "print('no model at /nowhere', flush=True); raise SystemExit(3)"],
        url=f"http://127.0.0.1:{free_port()}",
        env=os.environ,
        log=tmp_path / "broken.log",
    )
    with pytest.raises(ServiceExited, match=r"broken service exited with 3 while starting(.|\n)*no model at /nowhere"):
        wait_until_ready([service], timeout=30, poll_s=0.1)


def test_a_service_not_ready_in_time_is_named(tmp_path: Path) -> None:
    service = start_service(
        "slow", [sys.executable, "-c", "import time; time.sleep(600)"], url=f"http://127.0.0.1:{free_port()}",
        env=os.environ, log=None,
    )
    try:
        with pytest.raises(TimeoutError, match="not ready after 1 s: slow"):
            wait_until_ready([service], timeout=1, poll_s=0.1)
    finally:
        service.stop(grace_s=5)
    assert service.process is not None and service.process.returncode is not None


def test_free_port_prefers_the_port_asked_for() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        assert free_port(busy) != busy
    assert free_port(busy) == busy
