"""The migrations build exactly the schema the models describe, on both engines."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from subprocess import PIPE

import psycopg
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.storage.database import (
    EXPAND_ONLY_REVISIONS,
    alembic_config,
    make_engine,
    require_current_schema,
    upgrade_schema,
)
from tests.conftest import POSTGRES_ADMIN_URL, TEST_DATA_KEY, TEST_SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]


def test_migrations_match_the_models(services, database_url) -> None:
    # Raises if autogenerate would find any difference between models and migrations.
    command.check(alembic_config(services.engine.url.render_as_string(hide_password=False)))


def test_a_migrated_database_is_current(services) -> None:
    require_current_schema(services.engine)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all, as an operator's would be before the first upgrade."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"estafette_migrate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_two_hosts_upgrading_at_once_upgrade_one_after_the_other(empty_database_url: str) -> None:
    """Two api hosts start together on an empty database: neither trips on the other's
    half-made tables (PostgreSQL: an advisory lock; SQLite: its one writer)."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        for done in [pool.submit(_upgrade, empty_database_url) for _ in range(2)]:
            done.result()
    engine = make_engine(empty_database_url)
    require_current_schema(engine)
    engine.dispose()


def _upgrade(url: str) -> None:
    """One host's `db upgrade`, in a process of its own."""
    engine = make_engine(url)
    try:
        upgrade_schema(engine)
    finally:
        engine.dispose()


def test_a_database_with_rows_at_0001_upgrades_in_place_and_downgrades(
    empty_database_url: str,
) -> None:
    config = alembic_config(empty_database_url)
    command.upgrade(config, "0001")
    engine = make_engine(empty_database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (public_id, username, password_hash, is_admin, disabled,"
                " totp_active, totp_last_step, failed_otp_count, lockouts, created_at)"
                " VALUES ('usr_1', 'dr.martin', 'x', false, false, false, 0, 0, 0,"
                " CURRENT_TIMESTAMP)"
            )
        )
    command.upgrade(config, "head")
    with engine.connect() as conn:
        on_call = conn.execute(text("SELECT on_call FROM users WHERE username = 'dr.martin'"))
        assert on_call.scalar_one() in (False, 0)
    command.downgrade(config, "0001")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 1
    engine.dispose()


def test_0005_reseals_existing_values_for_their_rows_and_seals_push_tokens(
    empty_database_url: str,
) -> None:
    from backend.storage.encryption import decrypt, encrypt, set_data_key
    from backend.storage.models import Device, User

    set_data_key(b"k" * 32)
    config = alembic_config(empty_database_url)
    command.upgrade(config, "0002")
    engine = make_engine(empty_database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, public_id, username, password_hash, is_admin, disabled,"
                " totp_secret, totp_active, totp_last_step, failed_otp_count, lockouts,"
                " created_at) VALUES (1, 'usr_1', 'dr.martin', 'x', false, false, :totp, true,"
                " 0, 0, 0, CURRENT_TIMESTAMP)"
            ),
            {"totp": encrypt(b"JBSWY3DPEHPK3PXP", b"users.totp_secret")},
        )
        conn.execute(
            text(
                "INSERT INTO devices (id, public_id, user_id, name, platform, push_token,"
                " auth_method, authenticated_at, last_seen_at, created_at) VALUES (1, 'dev_1',"
                " 1, 'Pixel', 'android', 'fcm-token-1', 'totp', CURRENT_TIMESTAMP,"
                " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )

    command.upgrade(config, "head")
    with Session(engine) as db:
        assert db.get(User, 1).totp_secret == "JBSWY3DPEHPK3PXP"
        assert db.get(Device, 1).push_token == "fcm-token-1"
    with engine.connect() as conn:
        raw_token = conn.execute(text("SELECT push_token FROM devices")).scalar_one()
    assert b"fcm-token-1" not in bytes(raw_token)

    command.downgrade(config, "0002")
    with engine.connect() as conn:
        totp, token = conn.execute(
            text("SELECT totp_secret, push_token FROM users JOIN devices ON user_id = users.id")
        ).one()
    assert decrypt(bytes(totp), b"users.totp_secret") == b"JBSWY3DPEHPK3PXP"
    assert token == "fcm-token-1"
    engine.dispose()


def test_two_db_upgrade_commands_at_once_both_succeed_and_migrate_once(
    empty_database_url: str, tmp_path: Path
) -> None:
    """Two api hosts' `ExecStartPre=flask db upgrade` at the same moment, as processes."""
    env = {
        **os.environ,
        "ESTAFETTE_DATABASE_URL": empty_database_url,
        "ESTAFETTE_SECRET_KEY": TEST_SECRET_KEY,
        "ESTAFETTE_DATA_KEY": TEST_DATA_KEY,
        "ESTAFETTE_VAR_DIR": str(tmp_path / "var"),
        "ESTAFETTE_CA_BUNDLE": "system",
    }
    command_line = [sys.executable, "-m", "flask", "--app", "mobile_api", "db", "upgrade"]
    hosts = [
        subprocess.Popen(command_line, cwd=ROOT, env=env, stdout=PIPE, stderr=PIPE, text=True)
        for _ in range(2)
    ]
    for host in hosts:
        out, err = host.communicate(timeout=300)
        assert host.returncode == 0, err
        assert "database schema is up to date" in out
    engine = make_engine(empty_database_url)
    try:
        assert require_current_schema(engine).state == "current"
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            expansions = conn.execute(text("SELECT count(*) FROM schema_expansions")).scalar()
        assert len(versions) == 1
        assert expansions == len(EXPAND_ONLY_REVISIONS)
    finally:
        engine.dispose()
