"""The api as deployed, for the benches that drive it over HTTP: gunicorn on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(
    env: dict[str, str],
    port: int,
    *,
    app: str = "mobile_api.wsgi:app",
    access_log: Path | None = None,
) -> subprocess.Popen:
    """Start `infra/gunicorn.conf.py` with `env` and return once /readyz answers 200.

    `env` must bind ESTAFETTE_BIND to 127.0.0.1:`port`. The caller terminates the process.
    `app`: another WSGI app under the same configuration (a bench's floor); `access_log`:
    keep gunicorn's stdout (its access log) in that file.
    """
    out = access_log.open("wb") if access_log is not None else subprocess.DEVNULL
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "infra/gunicorn.conf.py", app],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=out,
        stderr=subprocess.DEVNULL,
    )
    if access_log is not None:
        out.close()  # the server holds its own copy
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.terminate()
            raise SystemExit("gunicorn did not become ready")
        time.sleep(0.2)
