"""Retention: the only code that deletes audit records, and it keeps the chain verifiable.

MSSanté traceability keeps records 6 to 12 months (ESTAFETTE_AUDIT_RETENTION_DAYS, at
least 183). A purge cuts a prefix of the chain and stores the hash of the last purged
record as the anchor, so `verify_chain` starts from it and still checks every kept record.
The purge itself is recorded in the trail with its anchor, and the anchor keeps the Merkle
frontier of the purged prefix (backend/audit/merkle.py) so signed checkpoints still verify.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.audit.anchoring import frontier_at
from backend.audit.trail import SYSTEM, Actor, AuditTrail, walk_chain
from backend.storage.models import AuditChainHead, AuditRecord, utcnow

MIN_RETENTION_DAYS = 183


class ChainBroken(RuntimeError):
    """The records to purge do not verify: purging would erase the evidence, so refuse."""

    def __init__(self, first_bad: int | None, reason: str | None) -> None:
        super().__init__(f"audit record {first_bad} does not verify ({reason}); nothing purged")
        self.first_bad = first_bad


@dataclass(frozen=True)
class PurgeResult:
    purged: int
    anchor_id: int
    anchor_hash: str
    cutoff: datetime


def _last_expired_id(db: Session, head: AuditChainHead, cutoff: datetime) -> int | None:
    """The end of the longest prefix of the chain whose records are all older than `cutoff`."""
    first_kept = db.scalar(
        select(func.min(AuditRecord.id)).where(
            AuditRecord.id > head.anchor_id, AuditRecord.occurred_at >= cutoff
        )
    )
    if first_kept is None:
        return head.last_id if head.last_id > head.anchor_id else None
    return db.scalar(
        select(func.max(AuditRecord.id)).where(
            AuditRecord.id > head.anchor_id, AuditRecord.id < first_kept
        )
    )


def purge_expired(
    sessions: sessionmaker[Session],
    audit: AuditTrail,
    *,
    retention_days: int,
    now: datetime | None = None,
    actor: Actor = SYSTEM,
) -> PurgeResult | None:
    """Delete records older than the retention period; None when nothing is due."""
    if retention_days < MIN_RETENTION_DAYS:
        raise ValueError(f"audit retention may not be under {MIN_RETENTION_DAYS} days")
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    with sessions() as db:
        head = db.get(AuditChainHead, 1)
        cut = _last_expired_id(db, head, cutoff)
        if cut is None:
            return None
        # Check what is about to go before it goes: a purge must never launder tampering.
        # This runs outside the head lock; the app never changes existing records.
        verdict, last_id, last_hash = walk_chain(
            db, after_id=head.anchor_id, expected_prev=head.anchor_hash, until_id=cut
        )
        if not verdict.ok or last_id != cut:
            raise ChainBroken(verdict.first_bad or cut, verdict.reason or "record missing")
        start_anchor = head.anchor_id
    with sessions() as db, db.begin():
        # Same lock as AuditTrail.record: no writer appends while the anchor moves.
        db.execute(
            update(AuditChainHead)
            .where(AuditChainHead.id == 1)
            .values(last_id=AuditChainHead.last_id)
        )
        head = db.get(AuditChainHead, 1)
        if head.anchor_id != start_anchor:
            return None  # another purge got there first
        # The Merkle roots of the purged prefix stay, so checkpoints still verify and prove.
        frontier = frontier_at(db, head, cut)
        purged = db.execute(
            delete(AuditRecord).where(AuditRecord.id > head.anchor_id, AuditRecord.id <= cut)
        ).rowcount
        head.anchor_id, head.anchor_hash = cut, last_hash
        head.anchor_frontier = json.dumps(frontier.to_hex())
    result = PurgeResult(purged=purged, anchor_id=cut, anchor_hash=last_hash, cutoff=cutoff)
    audit.record(
        "audit.purge",
        actor=actor,
        target_type="audit",
        details={
            "purged": purged,
            "anchor_id": cut,
            "anchor_hash": last_hash,
            "cutoff": cutoff.isoformat(timespec="seconds"),
            "retention_days": retention_days,
        },
    )
    return result
