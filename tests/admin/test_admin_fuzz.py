"""Schemathesis over the admin calls of the served OpenAPI document: never a 5xx.

A signed-in administrator (fresh second factor) drives every /admin operation with
generated input; half the generated ids are swapped for real ones, so the calls also
reach their success paths. New admin routes are fuzzed without touching this file.
"""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.admin.conftest import SignedIn, sign_in
from tests.api.fuzzing import EXCLUDED_CHECKS, FuzzedApp, fuzz_settings, served_schema
from tests.conftest import TEST_DATA_KEY, TEST_SECRET_KEY

ADMIN_CALLS = r"^/api/v1/admin/"
MAX_EXAMPLES = 25


def _settings(home: Any) -> dict[str, Any]:
    return {
        "ESTAFETTE_DATABASE_URL": f"sqlite:///{home / 'estafette.db'}",
        "ESTAFETTE_SECRET_KEY": TEST_SECRET_KEY,
        "ESTAFETTE_DATA_KEY": TEST_DATA_KEY,
        "ESTAFETTE_VAR_DIR": str(home / "var"),
        "ESTAFETTE_NIL": "test-nil",
        "ESTAFETTE_CA_BUNDLE": "system",
        "TESTING": True,
    }


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory, sqlite_template) -> Iterator[Any]:
    from mobile_api import create_app

    home = tmp_path_factory.mktemp("admin-fuzz")
    shutil.copy(sqlite_template, home / "estafette.db")
    app = create_app(_settings(home))
    yield app
    app.extensions["estafette"].engine.dispose()


class _Targets:
    """Real objects the generated ids are aimed at (never the fuzzing admin themselves)."""

    def __init__(self, app: Any) -> None:
        client, services = app.test_client(), app.extensions["estafette"]
        self.admin: SignedIn = sign_in(client, services, admin=True)
        self.user = sign_in(client, services, device={"name": "x", "platform": "web"})
        created = client.post(
            "/api/v1/admin/mailboxes",
            headers=self.admin.headers,
            json={
                "address": "fuzz@chu-test.mssante.fr",
                "kind": "ORG",
                "imap": {"host": "imap.x", "port": 993, "security": "tls", "auth": "password"},
            },
        )
        self.ids = {
            "user_id": self.user.user_id,
            "mailbox_id": created.get_json()["id"],
            "device_id": self.user.device_id,
        }


@pytest.fixture(scope="module")
def targets(fuzzed_app) -> _Targets:
    return _Targets(fuzzed_app)


FUZZED = FuzzedApp()
schema = served_schema(ADMIN_CALLS, FUZZED)


def _aim_at_real_objects(case: Any, targets: _Targets) -> None:
    parameters = case.path_parameters or {}
    for name, real in targets.ids.items():
        if name in parameters and zlib.crc32(str(parameters[name]).encode()) % 2 == 0:
            parameters[name] = real


@schema.parametrize()
@fuzz_settings(MAX_EXAMPLES)
def test_the_admin_calls_never_answer_a_server_error(case, fuzzed_app, targets) -> None:
    _aim_at_real_objects(case, targets)
    FUZZED.target = fuzzed_app
    case.call_and_validate(
        headers=targets.admin.headers,
        excluded_checks=EXCLUDED_CHECKS,
    )
