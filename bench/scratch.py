"""What every bench's gateway stands on: a PostgreSQL database of its own, and settings."""

from __future__ import annotations

import base64
import os
import uuid

import psycopg

ADMIN_URL = os.environ.get("ESTAFETTE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1/test")


class ScratchDatabase:
    """A database created for one bench run; `drop()` removes it, connections and all."""

    def __init__(self, label: str) -> None:
        self.name = f"estafette_bench_{label}_{uuid.uuid4().hex[:6]}"
        self.url = ADMIN_URL.rsplit("/", 1)[0] + f"/{self.name}"
        self._admin = psycopg.connect(ADMIN_URL, autocommit=True)
        self._admin.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        self._admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self._admin.close()


def gateway_env(database_url: str, *, ca_bundle: str = "system") -> dict[str, str]:
    """The settings every bench's gateway needs: fresh keys, no real NIL. Add the rest."""
    return {
        "ESTAFETTE_DATABASE_URL": database_url,
        "ESTAFETTE_SECRET_KEY": "bench-secret-key-bench-secret-key-bench",
        "ESTAFETTE_DATA_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "ESTAFETTE_NIL": "bench",
        "ESTAFETTE_CA_BUNDLE": ca_bundle,
    }
