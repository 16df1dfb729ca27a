"""Engine, sessions and schema state. One engine per process, built from Settings."""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError as AlembicError
from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Connection,
    Engine,
    any_,
    bindparam,
    create_engine,
    event,
    exc,
    inspect,
    make_url,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeEngine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class SchemaOutOfDate(RuntimeError):
    """The database is not at the latest migration; `db upgrade` must run first."""


def make_engine(url: str) -> Engine:
    """Create the engine with the settings each backend needs for concurrent workers.

    `hide_parameters`: bound values (subjects, addresses) never enter an exception's text,
    so no traceback can carry them into a log.
    """
    if url.startswith("sqlite"):
        database = make_url(url).database
        path = Path(database) if database and database != ":memory:" else None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            restrict_sqlite_files(path)
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            hide_parameters=True,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            # WAL lets the api read while sync writes; foreign keys are off by default.
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            if path is not None:
                restrict_sqlite_files(path)  # the WAL and SHM files exist from here on

        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20, hide_parameters=True)
    _ping_when_idle(engine)
    return engine


# A pooled connection unused for longer than this is pinged before it is handed out.
IDLE_BEFORE_PING_SECONDS = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only if it sat idle: a busy one just answered.

    Why: SQLAlchemy's `pool_pre_ping` pings at every checkout, and a read call checks a
    connection out two or three times (its session, after a commit, the audit writer):
    each ping is a round trip to PostgreSQL, as many as the call's own statements. A
    connection checked in less than IDLE_BEFORE_PING_SECONDS ago was working then; one
    idle longer (a quiet night, a PostgreSQL restart) is pinged, and a dead one is
    replaced before anyone uses it, as with `pool_pre_ping`.
    """

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["estafette_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("estafette_idle_since")  # absent: connected just now
        if since is None or time.monotonic() - since < IDLE_BEFORE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise exc.DisconnectionError("idle connection gone") from error  # pool reconnects


def restrict_sqlite_files(path: Path) -> None:
    """The database, its WAL and its shared memory readable by this user only (0600).

    They hold the same sealed secrets and mail metadata as the key files beside them.
    SQLite gives the WAL and SHM the main file's mode, so the main file is created 0600
    before SQLite first opens it, and all three are narrowed if an older run left 0644.
    """
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        with contextlib.suppress(FileNotFoundError):
            if stat.S_IMODE(file.stat().st_mode) & 0o077:
                file.chmod(0o600)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (we serialise after writing)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def commit_without_flush_wait(session: Session) -> None:
    """Commit bookkeeping a crash may lose (a device's last activity) without waiting for
    its WAL flush: PostgreSQL's `synchronous_commit` off, for this transaction alone.

    Why: a durable commit waits for the disk (milliseconds, more on a busy host) and the
    request waits with it. Never for what is promised durable (audit, revocations): a lost
    `last_seen_at` only makes a session look idle sooner, the safe side.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))
    session.commit()


def one_of(db: Session, column: ColumnElement[int], ids: Collection[int]) -> ColumnElement[bool]:
    """`column IN (ids)` for a batch of integer ids (hundreds, as the push dispatcher has).

    On PostgreSQL it is `column = ANY(:ids)`, one array parameter. An IN list is a new
    statement for every length: SQLAlchemy renders it and psycopg parses it again on each
    execution, which cost the dispatcher a fifth of its time; one text is parsed once,
    and the server can prepare it.
    """
    if db.get_bind().dialect.name == "postgresql":
        return column == any_(array_parameter(ids))
    return column.in_(ids)


def page_of(
    db: Session, query: Any, id_column: Any, *, limit: int, after: int | None
) -> tuple[list[Any], int | None]:
    """Keyset page over an integer key: the rows and the key to continue from."""
    if after is not None:
        query = query.where(id_column > after)
    rows = list(db.scalars(query.order_by(id_column).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], rows[limit - 1].id


def array_parameter(
    values: Iterable[Any], item_type: type[TypeEngine] = BigInteger
) -> BindParameter:
    """A PostgreSQL array bound as one parameter (ids are BIGINT by default)."""
    return bindparam(None, list(values), type_=ARRAY(item_type))


def alembic_config(url: str) -> AlembicConfig:
    """Alembic configured in code, so operators need no alembic.ini."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


# pg_advisory_xact_lock key of `db upgrade`: "ESTAFETT" as a big-endian int64.
MIGRATION_LOCK_KEY = int.from_bytes(b"ESTAFETT", "big") - 2**63


# Migrations that only add (a table, a nullable column, an index) and change no meaning:
# the build one step behind runs unchanged on a schema that has them, so hosts upgrade one
# at a time and a rollback needs no downgrade. A migration that drops, renames, tightens a
# constraint or rewrites data is a contract step and never goes here (infra/README.md,
# "Rolling upgrades").
EXPAND_ONLY_REVISIONS: frozenset[str] = frozenset({"0012"})


@dataclass(frozen=True)
class SchemaCompatibility:
    """Where the database's schema stands for this build.

    `state`: `current` (at this build's head), `expand_ahead` (one expand-only step
    ahead: accepted), `behind` (`db upgrade` must run) or `incompatible` (ahead by more,
    or by a contract step: this build must not run on it)."""

    current: str | None
    head: str
    state: str

    @property
    def accepted(self) -> bool:
        return self.state in ("current", "expand_ahead")


def schema_compatibility(engine: Engine) -> SchemaCompatibility:
    script = ScriptDirectory.from_config(alembic_config(str(engine.url)))
    head = script.get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        if current == head:
            state = "current"
        elif current is None or _known(script, current):
            state = "behind"
        else:
            state = "expand_ahead" if _expands(connection, current) == head else "incompatible"
    return SchemaCompatibility(current, head, state)


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except AlembicError:
        return False


def _expands(connection: Connection, revision: str) -> str | None:
    """The revision that `revision` expands, as the newer build's `db upgrade` recorded it."""
    if not inspect(connection).has_table("schema_expansions"):
        return None
    query = text("SELECT expands FROM schema_expansions WHERE revision = :revision")
    return connection.execute(query, {"revision": revision}).scalar()


def _record_expansions(connection: Connection, script: ScriptDirectory) -> None:
    """After an upgrade to head: every applied expand-only revision, for older builds."""
    connection.execute(text("DELETE FROM schema_expansions"))
    for script_revision in script.walk_revisions():
        if script_revision.revision in EXPAND_ONLY_REVISIONS:
            connection.execute(
                text("INSERT INTO schema_expansions (revision, expands) VALUES (:r, :e)"),
                {"r": script_revision.revision, "e": script_revision.down_revision},
            )


def upgrade_schema(engine: Engine) -> None:
    """Apply every pending migration (`flask --app mobile_api db upgrade`).

    The migration transaction first takes a lock (PostgreSQL: an advisory lock; SQLite:
    its write lock): two hosts that start together upgrade one after the other, and the
    second finds nothing left to do. A schema already one expand step ahead (a newer
    build's, during a rolling upgrade or after a rollback) is left as it is."""
    from alembic import command

    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            lock = text("SELECT pg_advisory_xact_lock(:key)")
            connection.execute(lock, {"key": MIGRATION_LOCK_KEY})
        elif connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, held to commit
        script = ScriptDirectory.from_config(config)
        current = MigrationContext.configure(connection).get_current_revision()
        if current is not None and not _known(script, current):
            if _expands(connection, current) == script.get_current_head():
                return  # a newer build's expand step: nothing for this build to do
            raise SchemaOutOfDate(
                f"the database schema is at {current}, which this version "
                f"({script.get_current_head()}) does not know: a newer version's, more than "
                "one expand step ahead; upgrade with that version"
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        _record_expansions(connection, script)


def schema_status(engine: Engine) -> tuple[str | None, str]:
    """Return (current revision, head revision)."""
    status = schema_compatibility(engine)
    return status.current, status.head


def require_current_schema(engine: Engine) -> SchemaCompatibility:
    """Refuse to run on a schema this build cannot use, with the command that fixes it.

    Accepted: this build's head, or one expand-only step ahead (a rolling upgrade)."""
    status = schema_compatibility(engine)
    if status.state == "behind":
        raise SchemaOutOfDate(
            f"the database schema is at {status.current or 'nothing'} but this version needs "
            f"{status.head}: run `flask --app mobile_api db upgrade` first"
        )
    if status.state == "incompatible":
        raise SchemaOutOfDate(
            f"the database schema is at {status.current}, which this version ({status.head}) "
            "does not know and cannot run on: a newer version's, more than one expand step "
            "ahead (run `flask --app mobile_api db upgrade` with that version and deploy it)"
        )
    return status
