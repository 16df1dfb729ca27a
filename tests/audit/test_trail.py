"""The audit trail: one writer, a hash chain that names the first record tampered with."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from backend.audit.trail import Actor, AuditDetailRefused, verify_chain


def _write(services, n: int) -> list[int]:
    return [
        services.audit.record(
            "message.read",
            actor=Actor("usr_a", "dev_a", "10.0.0.1"),
            target_type="message",
            target=f"msg_{i}",
            mailbox="mbx_1",
        ).id
        for i in range(n)
    ]


def test_an_honest_trail_verifies(services) -> None:
    _write(services, 5)
    with services.sessions() as db:
        result = verify_chain(db)
    assert result.ok and result.records == 5


def test_an_edited_record_is_named(services) -> None:
    ids = _write(services, 5)
    with services.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_records SET actor = 'usr_x' WHERE id = :id"), {"id": ids[2]}
        )
    with services.sessions() as db:
        result = verify_chain(db)
    assert not result.ok and result.first_bad == ids[2]


def test_a_deleted_record_is_named_by_its_successor(services) -> None:
    ids = _write(services, 5)
    with services.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_records WHERE id = :id"), {"id": ids[1]})
    with services.sessions() as db:
        result = verify_chain(db)
    assert not result.ok and result.first_bad == ids[2]


def test_free_text_that_could_be_content_is_refused(services) -> None:
    with pytest.raises(AuditDetailRefused):
        services.audit.record("message.send", details={"subject": "x" * 500})
