"""``serve`` holds the service's port from before start-up (vLLM's start-up opens ports of its own),
and keeps idle client connections open longer than clients do (uvicorn's default closed them at 5 s)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import httpx

APP = textwrap.dedent(
    """
    import sys, time
    from contextlib import asynccontextmanager
    from fastapi import FastAPI
    from ocrtune_shared.http import serve

    @asynccontextmanager
    async def lifespan(app):
        print("starting", flush=True)
        time.sleep(4)  # a slow start-up, like an engine loading
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    serve(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
    """
)


def test_port_is_held_during_start_up_then_served(tmp_path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = tmp_path / "app.py"
    script.write_text(APP)
    process = subprocess.Popen([sys.executable, str(script), str(port)], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        assert process.stdout.readline().strip() == "starting"
        intruder = socket.socket()
        try:
            intruder.bind(("127.0.0.1", port))
            taken = False
        except OSError:
            taken = True
        finally:
            intruder.close()
        assert taken, "another process could take the service's port while it was starting"
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json() == {"ok": True}
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "service never answered"
                time.sleep(0.2)
        _idle_connection_is_reused(port, idle_s=6)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _idle_connection_is_reused(port: int, idle_s: float) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        for attempt in range(2):
            conn.sendall(request)
            reply = _read_response(conn)
            assert reply.startswith(b"HTTP/1.1 200"), (attempt, reply)
            if attempt == 0:
                time.sleep(idle_s)  # longer than uvicorn's default keep-alive of 5 s


def _read_response(conn: socket.socket) -> bytes:
    """One whole HTTP response (headers, then Content-Length bytes); b"" if the server closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        chunk = conn.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
