"""The audit trail: one writer, a hash chain that names the first record tampered with."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from backend.audit.trail import AuditDetailRefused, verify_chain
from tests.audit.support import write_reads


def test_an_honest_trail_verifies(services) -> None:
    write_reads(services, 5)
    with services.sessions() as db:
        result = verify_chain(db)
    assert result.ok and result.records == 5


def test_an_edited_record_is_named(services) -> None:
    ids = write_reads(services, 5)
    with services.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_records SET actor = 'usr_x' WHERE id = :id"), {"id": ids[2]}
        )
    with services.sessions() as db:
        result = verify_chain(db)
    assert not result.ok and result.first_bad == ids[2]


def test_a_deleted_record_is_named_by_its_successor(services) -> None:
    ids = write_reads(services, 5)
    with services.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_records WHERE id = :id"), {"id": ids[1]})
    with services.sessions() as db:
        result = verify_chain(db)
    assert not result.ok and result.first_bad == ids[2]


def test_free_text_that_could_be_content_is_refused(services) -> None:
    with pytest.raises(AuditDetailRefused):
        services.audit.record("message.send", details={"subject": "x" * 500})
