"""Fixtures: the app on SQLite and on PostgreSQL, and the real services the tests talk to.

Every test that uses `app` runs twice, once per database engine. Services (Dovecot, the
local FCM server, Redis) are started for the session; a service that cannot start fails
the fixture with the reason, it never skips.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis as redis_lib
from flask import Flask
from sqlalchemy import Engine

from backend.accounts.passwords import Argon2Cost, use_cost
from backend.storage.database import make_engine, schema_status, upgrade_schema
from backend.storage.models import Base
from devtools.drills.push_harness import POSTGRES_ADMIN_URL, scratch_database
from devtools.fcm_server import FakeFcm

# The base database: xdist worker gwN takes the one N below it (see `worker_redis_url`).
REDIS_URL = os.environ.get("ESTAFETTE_TEST_REDIS", "redis://127.0.0.1:6379/15")
TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-for-eddsa-derivation"
TEST_DATA_KEY = base64.urlsafe_b64encode(b"k" * 32).decode()
# Argon2's floor: the suite signs in over a thousand times, and at the production cost that
# alone was a quarter of its CPU. tests/auth/test_password_cost.py checks the real one.
TEST_PASSWORD_COST = Argon2Cost(time_cost=1, memory_cost_kib=8, parallelism=1)


pytest_plugins = ("tests.xdist_ids",)


def pytest_configure(config: pytest.Config) -> None:
    use_cost(TEST_PASSWORD_COST)


def xdist_worker_number() -> int:
    """N on pytest-xdist's worker gwN, 0 without xdist: what per-worker resources key on."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))


def worker_redis_url(base: str = REDIS_URL) -> str:
    """The base URL's database number less the worker's: each worker flushes only its own."""
    parts = urllib.parse.urlsplit(base)
    database = int(parts.path.lstrip("/") or 0) - xdist_worker_number()
    if database < 0:
        pytest.fail(f"no Redis database left for worker {xdist_worker_number()} below {base}")
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by the services it needs, so `-m` selects and the counts are honest."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "postgresql" in params.values():  # database_url, or a module fixture's own
            item.add_marker(pytest.mark.postgres)
        if "dovecot" in names:
            item.add_marker(pytest.mark.dovecot)
        if "redis_url" in names or "redis" in params.values():  # also getfixturevalue'd
            item.add_marker(pytest.mark.redis)
        service_marks = {"postgres", "dovecot", "redis", "e2e", "unit"}
        if not service_marks & {m.name for m in item.iter_markers()}:
            item.add_marker(pytest.mark.unit)


# -- databases ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test: migrations run once per session."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_schema(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of our own on the machine's PostgreSQL, migrated once, dropped at the end."""
    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    with scratch_database("estafette_test") as url:
        try:
            yield url
        finally:
            if url in _postgres_resets:
                _postgres_resets.pop(url).engine.dispose()


class _PostgresReset:
    """Empties a test database between tests on one engine kept for the session.

    DELETE, not TRUNCATE: on tables this small TRUNCATE's new files per table cost far
    more than deleting the rows. One statement batch, one round trip: psycopg sends a text
    with several statements only without parameters, and every value here is our own
    (table names from the models, the head revision from the migrations)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url)
        _current, head = schema_status(self.engine)
        # Children first, so no foreign key is ever broken on the way.
        deletes = "".join(
            f'DELETE FROM "{table.name}";'  # noqa: S608
            for table in reversed(Base.metadata.sorted_tables)
        )
        version = f"UPDATE alembic_version SET version_num = '{head}';"  # noqa: S608
        chain_head = (  # the empty chain's head, as migration 0001 leaves it
            "INSERT INTO audit_chain_head (id, last_id, last_hash, anchor_id, anchor_hash)"
            " VALUES (1, 0, repeat('0', 64), 0, repeat('0', 64));"
        )
        # Sequences restart too (as TRUNCATE ... RESTART IDENTITY did): ids stay predictable.
        sequences = (
            "SELECT setval(c.oid, 1, false) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'S' AND n.nspname = current_schema();"
        )
        self.statements = deletes + version + chain_head + sequences

    def __call__(self) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql(self.statements)


_postgres_resets: dict[str, _PostgresReset] = {}


def _reset_postgres(url: str) -> None:
    """Empty every table and restore the schema version a test may have tampered with."""
    if url not in _postgres_resets:
        _postgres_resets[url] = _PostgresReset(url)
    _postgres_resets[url]()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "estafette.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_database")
    _reset_postgres(url)
    return url


@pytest.fixture
def base_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """The ESTAFETTE_* settings of a test gateway (also handed to subprocesses)."""
    return {
        "ESTAFETTE_DATABASE_URL": database_url,
        "ESTAFETTE_SECRET_KEY": TEST_SECRET_KEY,
        "ESTAFETTE_DATA_KEY": TEST_DATA_KEY,
        "ESTAFETTE_VAR_DIR": str(tmp_path / "var"),
        "ESTAFETTE_NIL": "test-nil",
        "ESTAFETTE_CA_BUNDLE": "system",  # tests that reach a server name their own CA
    }


@pytest.fixture
def make_app(base_env: dict[str, str]) -> Iterator[Callable[..., Flask]]:
    """Build the test gateway with some settings changed: `make_app(ESTAFETTE_X="...")`.

    The one way tests build an app (each engine is disposed at the end)."""
    from mobile_api import create_app

    built: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        application = create_app({**base_env, "TESTING": True, **overrides})
        built.append(application)
        return application

    yield build
    for application in built:
        application.extensions["estafette"].engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def dovecot_app(make_app: Callable[..., Flask], dovecot) -> Flask:
    """The gateway trusting the session Dovecot's throwaway CA."""
    return make_app(ESTAFETTE_CA_BUNDLE=str(dovecot.ca_cert_path))


@pytest.fixture
def dovecot_services(dovecot_app: Flask) -> Any:
    return dovecot_app.extensions["estafette"]


@pytest.fixture
def http(dovecot_app: Flask) -> Any:
    """The app's test client, for the specifications that reach the session Dovecot."""
    return dovecot_app.test_client()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def services(app):
    return app.extensions["estafette"]


# -- external services ----------------------------------------------------------------


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory):
    """One real Dovecot for the session (IMAPS, STARTTLS, LMTP); tests use their own users."""
    from devtools.dovecot import DovecotServer

    with running_dovecot(
        DovecotServer(tmp_path_factory.mktemp("dovecot"), max_connections=200)
    ) as server:
        yield server


@pytest.fixture(scope="session")
def dovecot_without_notify(tmp_path_factory: pytest.TempPathFactory):
    """An operator's server without NOTIFY (RFC 5465): its mailbox list index is off."""
    from devtools.dovecot import DovecotServer

    root = tmp_path_factory.mktemp("dovecot-no-notify")
    with running_dovecot(DovecotServer(root, max_connections=50, notify=False)) as server:
        yield server


@contextlib.contextmanager
def running_dovecot(server: Any) -> Iterator[Any]:
    """Start a harness Dovecot for a fixture, failing it with the reason if it cannot start."""
    try:
        server.start()
    except Exception as exc:
        pytest.fail(f"Dovecot could not start: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fcm_server() -> Iterator[FakeFcm]:
    with FakeFcm() as server:
        yield server


@pytest.fixture
def fake_fcm(fcm_server: FakeFcm) -> FakeFcm:
    fcm_server.reset()
    return fcm_server


@pytest.fixture
def fcm_credentials(fcm_server: FakeFcm, tmp_path: Path) -> Path:
    return fcm_server.write_service_account(tmp_path / "service-account.json")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The machine's Redis, on a database of the worker's own, flushed around each test."""
    url = worker_redis_url()
    client = redis_lib.Redis.from_url(url)
    try:
        client.ping()
    except redis_lib.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {url}: {exc}")
    client.flushdb()
    yield url
    client.flushdb()
    client.close()
