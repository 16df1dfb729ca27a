"""Mailbox leases: how sync workers share mailboxes without a coordinator of our own.

A worker holds a mailbox while its lease is fresh and renews it by heartbeat. A dead
worker's leases expire, and the others claim them (`FOR UPDATE SKIP LOCKED` on PostgreSQL,
so two claimers never block each other; SQLite serialises writers by itself).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from backend.storage.models import Mailbox, utcnow


def claim(*, db: Session, worker: str, lease_seconds: int, limit: int) -> list[Mailbox]:
    """Take up to `limit` mailboxes whose lease is free or expired."""
    now = utcnow()
    rows = list(
        db.scalars(
            select(Mailbox)
            .where(or_(Mailbox.lease_owner.is_(None), Mailbox.lease_expires_at < now))
            .order_by(Mailbox.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    for mailbox in rows:
        mailbox.lease_owner = worker
        mailbox.lease_expires_at = now + timedelta(seconds=lease_seconds)
    return rows


def renew(*, db: Session, worker: str, lease_seconds: int) -> dict[int, int]:
    """Extend every lease still ours; return {mailbox id: settings version} of those."""
    db.execute(
        update(Mailbox)
        .where(Mailbox.lease_owner == worker)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
    )
    return dict(
        db.execute(
            select(Mailbox.id, Mailbox.settings_version).where(Mailbox.lease_owner == worker)
        ).all()
    )


def release(*, db: Session, worker: str, mailbox_ids: list[int] | None = None) -> None:
    """Give leases back at shutdown (or for one restarted mailbox) so others need not wait."""
    query = update(Mailbox).where(Mailbox.lease_owner == worker)
    if mailbox_ids is not None:
        query = query.where(Mailbox.id.in_(mailbox_ids))
    db.execute(query.values(lease_owner=None, lease_expires_at=None))
