"""The real gateway for the browser tests: `flask serve` on SQLite (or PostgreSQL, see
`on_database`), a real Dovecot, and one clinician per screen size, each with a personal
mailbox and a delegated one.

Started once per module (a browser test costs seconds, a gateway start costs more).
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from backend.accounts import users
from backend.mailboxes import registry
from backend.storage.database import session_scope
from devtools import chromium, samples
from devtools.dovecot import DovecotServer
from devtools.drills.push_harness import POSTGRES_ADMIN_URL, scratch_database
from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "chu-test.mssante.fr"
COLLEAGUE = f"dr.bernard@{DOMAIN}"
SECRETARIAT = f"secretariat@{DOMAIN}"
PASSWORD = "mot-de-passe-de-test-assez-long"
SIZES = {"phone": (390, 844), "tablet": (820, 1180), "desktop": (1440, 900)}
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"


@dataclass
class Clinician:
    username: str
    address: str
    password: str = PASSWORD


@dataclass
class Gateway:
    base_url: str
    dovecot: DovecotServer
    imap_passwords: dict[str, str]
    clinicians: dict[str, Clinician] = field(default_factory=dict)

    def deliver(self, to: str, raw: bytes) -> None:
        self.dovecot.deliver(to, raw)


def _register(env: dict[str, str], dovecot: DovecotServer, names: list[str]) -> Gateway:
    from mobile_api import create_app

    passwords = {SECRETARIAT: secrets.token_urlsafe(12), COLLEAGUE: secrets.token_urlsafe(12)}
    clinicians = {n: Clinician(f"dr-{n}", f"dr.{n}@{DOMAIN}") for n in names}
    for clinician in clinicians.values():
        passwords[clinician.address] = secrets.token_urlsafe(12)
    for address, password in passwords.items():
        dovecot.add_user(address, password)
    app = create_app(dict(env))
    services = app.extensions["estafette"]

    def settings(address: str, imap: bool) -> registry.ServerSettings:
        if imap:
            return registry.ServerSettings(
                dovecot.host, dovecot.imaps_port, "tls", "password", address, passwords[address]
            )
        return registry.ServerSettings(
            dovecot.host,
            dovecot.submission_port,
            "starttls",
            "password",
            address,
            passwords[address],
        )

    with session_scope(services.sessions) as db:
        shared = registry.create_mailbox(
            db=db,
            address=SECRETARIAT,
            kind="ORG",
            display_name="Secrétariat de cardiologie",
            imap=settings(SECRETARIAT, True),
            smtp=settings(SECRETARIAT, False),
        )
        for clinician in clinicians.values():
            user = users.create_user(db=db, username=clinician.username, password=PASSWORD)
            personal = registry.create_mailbox(
                db=db,
                address=clinician.address,
                kind="PER",
                display_name=f"Dr {clinician.username}",
                imap=settings(clinician.address, True),
                smtp=settings(clinician.address, False),
            )
            registry.grant(db=db, mailbox=personal, user=user, role="owner")
            registry.grant(db=db, mailbox=shared, user=user, role="delegate")
    services.engine.dispose()
    for clinician in clinicians.values():
        dovecot.deliver(clinician.address, samples.plain_letter(to=clinician.address))
        dovecot.deliver(clinician.address, samples.xdm_discharge_letter(to=clinician.address))
    dovecot.deliver(SECRETARIAT, samples.plain_letter(to=SECRETARIAT))
    dovecot.deliver(SECRETARIAT, samples.html_alternative(to=SECRETARIAT))
    return Gateway("", dovecot, passwords, clinicians)


@contextmanager
def on_database(kind: str) -> Iterator[dict[str, str]]:
    """The settings that put a gateway on `kind`: "sqlite" (running_gateway's own file) or
    "postgresql" (a scratch database on the machine's server, dropped after)."""
    if kind == "sqlite":
        yield {}
        return
    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    with scratch_database("estafette_web") as url:
        yield {"ESTAFETTE_DATABASE_URL": url}


@contextmanager
def running_gateway(
    root: Path, names: list[str], *, settings: dict[str, str] | None = None, port: int = 0
) -> Iterator[Gateway]:
    """Dovecot, the schema, the clinicians, then `flask serve`; all stopped at the end.
    `settings` adds to the gateway's; `port`, when given, is where it listens."""
    dovecot = DovecotServer(root / "dovecot", max_connections=200)
    try:
        dovecot.start()
    except Exception as exc:
        pytest.fail(f"Dovecot could not start: {exc}")
    process = None
    try:
        if dovecot.submission_port is None:
            pytest.fail(
                "Dovecot's submission service is missing: apt-get install dovecot-submissiond"
            )
        env = {
            "ESTAFETTE_DATABASE_URL": f"sqlite:///{root / 'estafette.db'}",
            "ESTAFETTE_SECRET_KEY": secrets.token_urlsafe(48),
            "ESTAFETTE_DATA_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "ESTAFETTE_VAR_DIR": str(root / "var"),
            "ESTAFETTE_NIL": "test-nil",
            "ESTAFETTE_CA_BUNDLE": str(dovecot.ca_cert_path),
            **(settings or {}),
        }
        full_env = {**os.environ, **env}
        upgrade = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "mobile_api", "db", "upgrade"],
            env=full_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if upgrade.returncode != 0:
            pytest.fail(f"db upgrade failed: {upgrade.stderr}")
        gateway = _register(env, dovecot, names)
        port = port or free_port()
        log = (root / "gateway.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "mobile_api", "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=ROOT,
        )
        gateway.base_url = f"http://127.0.0.1:{port}"
        _wait_ready(gateway.base_url, process, root / "gateway.log")
        yield gateway
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        dovecot.stop()


def _wait_ready(base_url: str, process: subprocess.Popen, log: Path) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"the gateway exited: {log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout=60, interval=0.2, what="the gateway's /readyz")
    except AssertionError as exc:
        pytest.fail(f"{exc}: {log.read_text()[-2000:]}")


def launch_chromium(playwright):
    """Debian's Chromium (devtools.chromium); fails the test with the reason if it cannot."""
    try:
        return chromium.launch_chromium(playwright)
    except chromium.ChromiumUnavailable as exc:
        pytest.fail(str(exc))
