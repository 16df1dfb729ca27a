"""A backup restores into a gateway that serves: dump, check, drop, restore, serve.

`flask --app mobile_api backup verify FILE` restores a pg_dump into a scratch database and
checks the schema, the audit chain and the data key; the operator's whole cycle then
brings back a gateway on which a device signed in before the backup still lists its mail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url, select

from backend.storage.database import make_engine, upgrade_schema
from backend.storage.models import User
from devtools.drills.world import World
from tests.conftest import POSTGRES_ADMIN_URL
from tests.factories import create_user
from tests.support import Authenticator, bearer, body

ROOT = Path(__file__).resolve().parents[2]
OTHER_DATA_KEY = "b" * 43 + "="  # a valid key, not the one that sealed the data


def _admin(sql: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql)


@pytest.fixture
def database() -> Iterator[str]:
    """A production-like database of our own (the shared test database is not dropped)."""
    name = f"estafette_backup_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    upgrade_schema(engine)
    engine.dispose()
    try:
        yield url
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_env(url: str) -> dict[str, str]:
    parsed = make_url(url)
    return {
        **os.environ,
        "PGHOST": parsed.host or "localhost",
        "PGPORT": str(parsed.port or 5432),
        "PGUSER": parsed.username or "postgres",
        "PGDATABASE": parsed.database or "",
    }


def _flask(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "mobile_api", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def signed_in(make_app, database):
    """A user with a cached message, signed in on a phone: (app, token, mailbox id, subject)."""
    app = make_app(ESTAFETTE_DATABASE_URL=database)
    services = app.extensions["estafette"]
    username = create_user(services)
    with services.sessions() as db:
        user_id = db.scalar(select(User.id).where(User.username == username))
    world = World(services)
    mailbox_id, public_id = world.mailbox(user_id)
    subject = f"Compte rendu {uuid.uuid4().hex[:6]}"
    world.new_mail(mailbox_id, subject=subject)
    client = app.test_client()
    device = {"name": "Pixel de garde", "platform": "android", "push_token": "tok-backup"}
    token = Authenticator().sign_in(client, username, device=device)["access_token"]
    return app, token, public_id, subject


def _listed_subjects(client, token: str, mailbox: str) -> list[str]:
    answer = client.get(f"/api/v1/mailboxes/{mailbox}/messages", headers=bearer(token))
    assert answer.status_code == 200, body(answer)
    return [item["subject"] for item in body(answer)["items"]]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_dump_restored_after_the_database_is_lost_serves_the_signed_in_device(
    signed_in, make_app, base_env, database, tmp_path: Path
) -> None:
    app, token, mailbox, subject = signed_in
    assert _listed_subjects(app.test_client(), token, mailbox) == [subject]
    env = {**base_env, "ESTAFETTE_DATABASE_URL": database}

    dump = tmp_path / "estafette.dump"
    subprocess.run(
        ["pg_dump", "--format=custom", "--file", str(dump)],
        env=_pg_env(database),
        check=True,
        timeout=300,
    )
    checked = _flask(env, "backup", "verify", str(dump))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok      migrations" in checked.stdout
    assert "ok      audit chain" in checked.stdout
    assert "ok      data key" in checked.stdout
    assert subject not in checked.stdout + checked.stderr  # opened, never shown

    # The server is lost: the database is dropped, then made again from the dump.
    app.extensions["estafette"].engine.dispose()
    name = make_url(database).database
    _admin(f'DROP DATABASE "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}"')
    subprocess.run(
        ["pg_restore", "--no-owner", "--exit-on-error", "--dbname", name, str(dump)],
        env=_pg_env(database),
        check=True,
        timeout=300,
    )

    restored = make_app(ESTAFETTE_DATABASE_URL=database).test_client()
    assert restored.get("/readyz").status_code == 200
    assert _listed_subjects(restored, token, mailbox) == [subject]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_backup_verify_fails_when_the_configured_data_key_does_not_open_the_dump(
    signed_in, base_env, database, tmp_path: Path
) -> None:
    dump = tmp_path / "estafette.sql"  # plain SQL this time: psql restores it
    subprocess.run(
        ["pg_dump", "--format=plain", "--file", str(dump)],
        env=_pg_env(database),
        check=True,
        timeout=300,
    )
    env = {**base_env, "ESTAFETTE_DATABASE_URL": database, "ESTAFETTE_DATA_KEY": OTHER_DATA_KEY}
    checked = _flask(env, "backup", "verify", str(dump))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "FAILED  data key" in checked.stdout
    assert "ok      audit chain" in checked.stdout


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_backup_verify_needs_a_postgresql_gateway(base_env, tmp_path: Path) -> None:
    dump = tmp_path / "estafette.dump"
    dump.write_bytes(b"PGDMP")
    checked = _flask(base_env, "backup", "verify", str(dump))
    assert checked.returncode == 1
    assert "ESTAFETTE_DATABASE_URL is not one" in checked.stderr
