"""What the sync drills share: a real `flask --app mobile_api sync` process, a PostgreSQL
cluster of their own that a drill may stop, and fast delivery of many messages.

"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg

from devtools.drills.push_harness import DATA_KEY, SECRET_KEY

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class SyncProcess:
    """One `flask --app mobile_api sync` process, its log in a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> SyncProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "mobile_api", "sync", "--pool-size", "4"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def peak_rss_kib(self) -> int:
        """VmHWM: the highest resident set size the process has had (Linux /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc status")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, leases left to expire."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class ThrowawayPostgres:
    """A cluster of its own, on its own port, from the machine's binaries; never the shared one."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="estafette-drill-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                   "--auth=trust", "--no-sync"])  # fmt: skip

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(
            _as_postgres(command), capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stderr.strip()[-2000:]}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c full_page_writes=off -c synchronous_commit=off"
        )
        self._run([str(PG_BIN / "pg_ctl"), "start", "-w", "-D", str(self.data),
                   "-l", str(self.root / "postgres.log"), "-o", options])  # fmt: skip

    def stop(self) -> None:
        """A fast shutdown: every connection is cut, as in an outage."""
        self._run([str(PG_BIN / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data)])

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run(
                [str(PG_BIN / "pg_ctl"), "stop", "-w", "-m", "immediate", "-D", str(self.data)]
            )
        shutil.rmtree(self.root, ignore_errors=True)


def gateway_env(database_url: str, dovecot: Any, var_dir: Path, **extra: str) -> dict[str, str]:
    """The settings of a drill's gateway (the same keys as the suite's `base_env`)."""
    return {
        "ESTAFETTE_DATABASE_URL": database_url,
        "ESTAFETTE_SECRET_KEY": SECRET_KEY,
        "ESTAFETTE_DATA_KEY": DATA_KEY,
        "ESTAFETTE_VAR_DIR": str(var_dir),
        "ESTAFETTE_NIL": "test-nil",
        "ESTAFETTE_CA_BUNDLE": str(dovecot.ca_cert_path),
        **extra,
    }


def deliver_many(dovecot: Any, recipient: str, messages: Iterable[bytes]) -> None:
    """Many messages over one LMTP session (one connection per message is too slow)."""
    with smtplib.LMTP(dovecot.host, dovecot.lmtp_port, timeout=60) as lmtp:
        for raw in messages:
            refused = lmtp.sendmail("sender@mssante.example", [recipient], raw)
            assert not refused, refused


def mail(subject: str, to: str = "x@chu-test.mssante.fr") -> bytes:
    message = EmailMessage()
    message["From"] = "Dr Test <test@ch-exemple.mssante.fr>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Corps du message.")
    return bytes(message)
