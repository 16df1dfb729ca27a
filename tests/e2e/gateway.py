"""The gateway as an operator runs it: `flask --app mobile_api ...` commands and `serve`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


class Gateway:
    """Runs the command line and `serve` with one environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env}
        self._flask = [sys.executable, "-m", "flask", "--app", "mobile_api"]

    def cli(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [*self._flask, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=ROOT,
            timeout=60,
        )
        assert result.returncode == 0, f"{args[:2]} failed: {result.stderr}"
        return result.stdout

    def add_owned_mailbox(self, address: str, imap_password: str, dovecot: Any, owner: str) -> None:
        """A PER mailbox on the test Dovecot (TLS, password), granted to `owner`."""
        self.cli(
            "mailboxes",
            "create",
            address,
            *("--kind", "PER", "--imap-host", dovecot.host),
            *("--imap-port", str(dovecot.imaps_port), "--security", "tls"),
            *("--auth", "password", "--secret-stdin"),
            stdin=imap_password + "\n",
        )
        self.cli("mailboxes", "grant", address, owner, "--role", "owner")

    @contextmanager
    def serving(self, log_path: Path) -> Iterator[str]:
        """`serve` on a free port until the block ends; yields its base URL once ready."""
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "flask",
                    "--app",
                    "mobile_api",
                    "serve",
                    "--port",
                    str(port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=ROOT,
            )

        def ready() -> bool:
            try:
                return httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200
            except httpx.TransportError:
                assert server.poll() is None, log_path.read_text()
                return False

        try:
            wait_until(ready, timeout=30, what="the gateway to be ready")
            yield base_url
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
