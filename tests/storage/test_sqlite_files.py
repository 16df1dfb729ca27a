"""The SQLite database, its WAL and its shared memory are 0600, like the key files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy import text

from backend.storage.database import make_engine


def _modes(path: Path) -> dict[str, int]:
    return {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
    }


def _write(path: Path) -> None:
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
            connection.execute(text("INSERT INTO t VALUES (1)"))
        with engine.connect() as connection:  # WAL and SHM exist while a connection is open
            connection.execute(text("SELECT x FROM t"))
            assert set(_modes(path).values()) == {0o600}, _modes(path)
    finally:
        engine.dispose()


def test_a_new_database_and_its_wal_and_shm_are_readable_by_their_owner_only(
    tmp_path: Path,
) -> None:
    old = os.umask(0o022)
    try:
        _write(tmp_path / "var" / "estafette.db")
    finally:
        os.umask(old)


def test_a_database_left_world_readable_by_an_older_version_is_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "estafette.db"
    _write(path)
    path.chmod(0o644)

    _write(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
