"""Retention: records past ESTAFETTE_AUDIT_RETENTION_DAYS (default 365, at least 183) are
purged, and an anchor keeps the rest of the chain verifiable."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from backend.audit.retention import ChainBroken, purge_expired
from backend.audit.trail import Actor, verify_chain
from backend.config import ConfigError, load_settings
from backend.storage.models import AuditChainHead, AuditRecord, utcnow


def _write(services, ages_in_days: list[int]) -> list[int]:
    now = utcnow()
    return [
        services.audit.record(
            "message.read",
            actor=Actor("usr_reader", "dev_1"),
            target_type="message",
            target=f"msg_{i}",
            at=now - timedelta(days=age),
        ).id
        for i, age in enumerate(ages_in_days)
    ]


def _count(services) -> int:
    with services.sessions() as db:
        return db.scalar(select(func.count(AuditRecord.id)))


def test_a_purge_keeps_an_anchor_and_verify_still_passes(services) -> None:
    ids = _write(services, [400, 390, 370, 100, 3])
    result = purge_expired(services.sessions, services.audit, retention_days=365)
    assert (result.purged, result.anchor_id) == (3, ids[2])
    with services.sessions() as db:
        head = db.get(AuditChainHead, 1)
        kept = db.scalars(select(AuditRecord.id).order_by(AuditRecord.id)).all()
        verdict = verify_chain(db)
        purge_record = db.scalar(select(AuditRecord).where(AuditRecord.action == "audit.purge"))
    assert (head.anchor_id, head.anchor_hash) == (ids[2], result.anchor_hash)
    assert kept[:2] == ids[3:]
    assert verdict.ok and verdict.records == 3  # two kept, plus the purge's own record
    assert json.loads(purge_record.details)["anchor_hash"] == result.anchor_hash


def test_the_first_kept_record_still_points_at_the_anchor(services) -> None:
    ids = _write(services, [400, 10])
    purge_expired(services.sessions, services.audit, retention_days=365)
    with services.sessions() as db:
        first_kept = db.get(AuditRecord, ids[1])
        assert first_kept.prev_hash == db.get(AuditChainHead, 1).anchor_hash


def test_tampering_after_a_purge_is_still_named(services) -> None:
    ids = _write(services, [400, 10, 5])
    purge_expired(services.sessions, services.audit, retention_days=365)
    with services.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_records SET actor = 'usr_x' WHERE id = :id"), {"id": ids[1]}
        )
    with services.sessions() as db:
        verdict = verify_chain(db)
    assert (verdict.ok, verdict.first_bad) == (False, ids[1])


def test_a_purge_refuses_to_erase_a_tampered_record(services) -> None:
    ids = _write(services, [400, 390, 10])
    with services.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_records SET target = 'msg_x' WHERE id = :id"), {"id": ids[0]}
        )
    with pytest.raises(ChainBroken) as refused:
        purge_expired(services.sessions, services.audit, retention_days=365)
    assert refused.value.first_bad == ids[0]
    assert _count(services) == 3


def test_nothing_young_enough_is_purged(services) -> None:
    _write(services, [200, 10])
    assert purge_expired(services.sessions, services.audit, retention_days=365) is None
    assert _count(services) == 2


def test_a_record_younger_than_the_cut_stops_it_even_if_later_ones_are_old(services) -> None:
    # Purging cuts a prefix of the chain: an old record behind a young one is kept.
    ids = _write(services, [400, 10, 400])
    result = purge_expired(services.sessions, services.audit, retention_days=365)
    assert result.anchor_id == ids[0]
    assert _count(services) == 3  # two kept, plus the purge record


def test_retention_below_six_months_is_refused(services) -> None:
    with pytest.raises(ValueError):
        purge_expired(services.sessions, services.audit, retention_days=90)
    with pytest.raises(ConfigError):
        load_settings({"ESTAFETTE_AUDIT_RETENTION_DAYS": "90"})


def test_the_command_line_purges_with_the_configured_retention(make_app, services) -> None:
    app = make_app(ESTAFETTE_AUDIT_RETENTION_DAYS="200")
    try:
        _write(services, [300, 250, 100])
        result = app.test_cli_runner().invoke(args=["audit", "purge"])
        assert result.exit_code == 0, result.output
        assert "purged 2 records" in result.output
        verify = app.test_cli_runner().invoke(args=["audit", "verify"])
        assert verify.exit_code == 0 and "intact: 2 records" in verify.output
        again = app.test_cli_runner().invoke(args=["audit", "purge"])
        assert "nothing to purge" in again.output
    finally:
        app.extensions["estafette"].engine.dispose()
