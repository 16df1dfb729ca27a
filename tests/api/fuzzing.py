"""What the schemathesis runs share: the served OpenAPI document, and a WSGI slot for the app.

Schemathesis loads the schema at collection, before any fixture has built an app, so the
schema points at `FuzzedApp` and a test plugs its module's app in at run time.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi import checks

from tests.conftest import TEST_DATA_KEY, TEST_SECRET_KEY


class FuzzedApp:
    """The WSGI app schemathesis calls; `target` is set by the test to its fixture's app."""

    target: Any = None

    def __call__(self, environ: dict, start_response: Any) -> Any:
        return self.target(environ, start_response)


def served_schema(path_regex: str, app: FuzzedApp) -> Any:
    """The OpenAPI document as the app serves it (it needs no database), limited to a path."""
    from mobile_api import create_app

    spec_only = create_app(
        {
            "ESTAFETTE_DATABASE_URL": "sqlite://",
            "ESTAFETTE_SECRET_KEY": TEST_SECRET_KEY,
            "ESTAFETTE_DATA_KEY": TEST_DATA_KEY,
            "ESTAFETTE_VAR_DIR": "/nonexistent",
            "ESTAFETTE_NIL": "test-nil",
            "ESTAFETTE_CA_BUNDLE": "system",
            "TESTING": True,
        }
    )
    response = spec_only.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec_only.extensions["estafette"].engine.dispose()
    schema = schemathesis.openapi.from_dict(response.json).include(path_regex=path_regex)
    schema.app = app
    return schema


# Left out of every run: `positive_data_acceptance` (cursors, sync states and ids are
# opaque strings: a schema-valid one we did not issue is rightly refused) and
# `negative_data_rejection` (unknown query parameters are ignored, for forward
# compatibility, not refused).
EXCLUDED_CHECKS = [checks.positive_data_acceptance, checks.negative_data_rejection]


def fuzz_settings(max_examples: int) -> Any:
    """Repeatable runs (derandomized) with no per-example deadline: each call hits a database."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
