"""What every bench's gateway stands on: a PostgreSQL database of its own, and settings."""

from __future__ import annotations

import base64
import os

from devtools.drills.push_harness import EmptyDatabase


class ScratchDatabase(EmptyDatabase):
    """A database created for one bench run (`estafette_bench_<label>_…`); `drop()` ends it."""

    def __init__(self, label: str) -> None:
        super().__init__(f"estafette_bench_{label}")


def gateway_env(database_url: str, *, ca_bundle: str = "system") -> dict[str, str]:
    """The settings every bench's gateway needs: fresh keys, no real NIL. Add the rest."""
    return {
        "ESTAFETTE_DATABASE_URL": database_url,
        "ESTAFETTE_SECRET_KEY": "bench-secret-key-bench-secret-key-bench",
        "ESTAFETTE_DATA_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "ESTAFETTE_NIL": "bench",
        "ESTAFETTE_CA_BUNDLE": ca_bundle,
    }
