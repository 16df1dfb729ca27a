"""Expand/contract: a build runs on its own head, or on a schema one expand-only step
ahead of it (a newer build's, mid-upgrade or after a rollback), and says which in /readyz.

A newer revision is simulated here by writing its id and, as the newer build's
`db upgrade` would, its expand declaration (tests/ops/test_old_and_new_builds.py runs a
real newer build).
"""

from __future__ import annotations

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from backend.storage.database import (
    EXPAND_ONLY_REVISIONS,
    SchemaOutOfDate,
    alembic_config,
    require_current_schema,
    schema_compatibility,
    upgrade_schema,
)

NEWER = "9001"


def _move_to(services, revision: str, *, expands: str | None) -> None:
    with services.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
        if expands is not None:
            conn.execute(
                text("INSERT INTO schema_expansions (revision, expands) VALUES (:r, :e)"),
                {"r": revision, "e": expands},
            )


def test_a_build_at_its_head_is_current(client, services) -> None:
    status = require_current_schema(services.engine)
    assert status.state == "current"
    answer = client.get("/readyz").get_json()
    assert answer["schema_state"] == "current"
    assert answer["schema"] == answer["code_schema"] == status.head


def test_one_expand_step_ahead_is_accepted_and_said_in_readyz(client, services) -> None:
    head = schema_compatibility(services.engine).head
    _move_to(services, NEWER, expands=head)

    assert require_current_schema(services.engine).state == "expand_ahead"
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.get_json() == {
        "status": "ready",
        "schema": NEWER,
        "code_schema": head,
        "schema_state": "expand_ahead",
    }


def test_db_upgrade_of_the_older_build_leaves_a_newer_expand_step_alone(services) -> None:
    head = schema_compatibility(services.engine).head
    _move_to(services, NEWER, expands=head)
    upgrade_schema(services.engine)  # a rolled-back host starting: nothing to do, no error
    assert schema_compatibility(services.engine).current == NEWER


def test_a_contract_step_ahead_is_refused_everywhere(client, services) -> None:
    _move_to(services, NEWER, expands=None)  # not declared expand-only
    assert schema_compatibility(services.engine).state == "incompatible"
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.get_json()["code"] == "not_ready"
    with pytest.raises(SchemaOutOfDate, match="does not know"):
        require_current_schema(services.engine)
    with pytest.raises(SchemaOutOfDate, match="does not know"):
        upgrade_schema(services.engine)


def test_two_expand_steps_ahead_are_refused(services) -> None:
    _move_to(services, "9002", expands=NEWER)  # expands a revision this build never had
    assert schema_compatibility(services.engine).state == "incompatible"


def test_db_upgrade_records_the_declared_expand_steps_for_older_builds(services) -> None:
    with services.engine.begin() as conn:
        conn.execute(text("DELETE FROM schema_expansions"))
    command.downgrade(alembic_config(services.engine.url.render_as_string(False)), "-1")
    upgrade_schema(services.engine)
    with services.engine.connect() as conn:
        recorded = dict(conn.execute(text("SELECT revision, expands FROM schema_expansions")).all())
    script = ScriptDirectory.from_config(alembic_config(str(services.engine.url)))
    assert recorded == {
        revision: script.get_revision(revision).down_revision for revision in EXPAND_ONLY_REVISIONS
    }
