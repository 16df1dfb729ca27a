"""`backup verify`: does a `pg_dump` restore into a gateway that works with today's keys?

A dump that restores but whose sealed values do not open (the data key was lost or is
not the one in use) is no backup. The check restores the file into a scratch database
on the configured server, then looks at what a restored gateway would need: the schema
at a migration this code accepts, an audit chain that verifies, and one sealed value (a
cached envelope, else a mailbox secret) that opens with the configured data key. The
scratch database is dropped at the end, whatever happened.

The PostgreSQL client tools (pg_restore, psql) run with the password in PGPASSWORD,
never on their command line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import URL, make_url, select, text
from sqlalchemy.orm import Session

from backend.audit.trail import verify_chain
from backend.storage.database import make_engine, schema_compatibility
from backend.storage.encryption import DataKeyError
from backend.storage.models import Mailbox, Message

# pg_dump's custom format (-Fc) starts with this; anything else is taken as plain SQL.
CUSTOM_FORMAT_MAGIC = b"PGDMP"
RESTORE_TIMEOUT_SECONDS = 3600


class BackupError(RuntimeError):
    """The check could not run (no PostgreSQL, no client tools, an unreadable file)."""


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str


@dataclass
class BackupReport:
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.findings) and all(finding.ok for finding in self.findings)

    def add(self, check: str, ok: bool, detail: str) -> None:
        self.findings.append(Finding(check, ok, detail))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} is not installed (the PostgreSQL client tools)")
    return path


def _client_env(url: URL) -> dict[str, str]:
    """libpq's variables for `url`: the password never reaches a command line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGHOST"] = url.host or "localhost"
    env["PGPORT"] = str(url.port or 5432)
    if url.username:
        env["PGUSER"] = url.username
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    env["PGDATABASE"] = url.database or ""
    return env


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[URL]:
    """A new, empty database on the server of `server_url`, dropped on the way out."""
    url = make_url(server_url)
    if url.get_backend_name() != "postgresql":
        raise BackupError("a pg_dump restores into PostgreSQL: ESTAFETTE_DATABASE_URL is not one")
    name = f"estafette_backup_check_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def restore(dump: Path, into: URL) -> None:
    """pg_restore a custom-format dump, or psql a plain one, stopping at the first error."""
    try:
        with dump.open("rb") as file:
            custom = file.read(len(CUSTOM_FORMAT_MAGIC)) == CUSTOM_FORMAT_MAGIC
    except OSError as exc:
        raise BackupError(f"cannot read {dump}: {exc.strerror}") from exc
    if custom:
        command = [_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error"]
        command += ["--dbname", into.database or "", str(dump)]
    else:
        command = [_tool("psql"), "--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1"]
        command += ["--file", str(dump)]
    result = subprocess.run(  # noqa: S603  (our tools, the operator's file; no shell)
        command,
        env=_client_env(into),
        capture_output=True,
        text=True,
        timeout=RESTORE_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        raise BackupError(f"the restore failed: {result.stderr.strip()[-2000:]}")


def check_restored(url: URL) -> BackupReport:
    """The three checks on a restored database."""
    report = BackupReport()
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        schema = schema_compatibility(engine)
        report.add(
            "migrations",
            schema.accepted,
            f"schema at {schema.current or 'nothing'} ({schema.state}); "
            f"this version runs on {schema.head}",
        )
        with Session(engine) as db:
            chain = verify_chain(db)
            report.add(
                "audit chain",
                chain.ok,
                f"{chain.records} records intact"
                if chain.ok
                else f"broken at record {chain.first_bad}: {chain.reason}",
            )
            report.add("data key", *_one_sealed_value_opens(db))
    finally:
        engine.dispose()
    return report


def _one_sealed_value_opens(db: Session) -> tuple[bool, str]:
    """Open a cached envelope's subject, else a mailbox's IMAP secret: never shown."""
    message = db.scalars(
        select(Message).where(Message.subject.is_not(None)).order_by(Message.id).limit(1)
    ).first()
    try:
        if message is not None:
            message.subject  # noqa: B018  (decrypts, or raises)
            return True, f"a cached envelope ({message.public_id}) opens with the configured key"
        mailbox = db.scalars(
            select(Mailbox).where(Mailbox.imap_secret.is_not(None)).order_by(Mailbox.id).limit(1)
        ).first()
        if mailbox is None:
            return False, "nothing sealed in the dump to try the key on"
        mailbox.imap_secret  # noqa: B018
        return True, f"a mailbox secret ({mailbox.public_id}) opens with the configured key"
    except (DataKeyError, ValueError) as exc:
        return False, f"a sealed value does NOT open with the configured key ({type(exc).__name__})"


def verify_backup(dump: Path, server_url: str) -> BackupReport:
    """Restore `dump` into a scratch database on `server_url`'s server and check it."""
    with scratch_database(server_url) as scratch:
        restore(dump, scratch)
        return check_restored(scratch)
