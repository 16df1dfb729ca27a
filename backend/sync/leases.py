"""Mailbox leases: how sync workers share mailboxes without a coordinator of our own.

A worker holds a mailbox while its lease is fresh and renews it by heartbeat. A dead
worker's leases expire, and the others claim them (`FOR UPDATE SKIP LOCKED` on PostgreSQL,
so two claimers never block each other; SQLite serialises writers by itself).

Workers also beat in `sync_workers` with their capacity, so each can compute the same fair
share for itself (`fair_share`): a worker that joins gets mailboxes released by the others,
and a dead worker's share grows back into the survivors' once its beat is stale.
"""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from backend.storage.models import Mailbox, SyncWorkerBeat, utcnow

# A worker's beat is forgotten this many lease periods after it stopped.
FORGET_AFTER_LEASES = 10


def claim(*, db: Session, worker: str, lease_seconds: int, limit: int) -> list[Mailbox]:
    """Take up to `limit` mailboxes whose lease is free or expired.

    The UPDATE re-checks that the lease is still free, so of two workers that picked the
    same candidates only the first writer wins them, on any engine: PostgreSQL locks the
    candidates (SKIP LOCKED lets the other claimer pass), SQLite serialises the writes.
    """
    now = utcnow()
    free = or_(Mailbox.lease_owner.is_(None), Mailbox.lease_expires_at < now)
    candidates = list(
        db.scalars(
            select(Mailbox.id)
            .where(free)
            .order_by(Mailbox.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not candidates:
        return []
    db.execute(
        update(Mailbox)
        .where(Mailbox.id.in_(candidates), free)
        .values(lease_owner=worker, lease_expires_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    return list(
        db.scalars(
            select(Mailbox)
            .where(Mailbox.id.in_(candidates), Mailbox.lease_owner == worker)
            .execution_options(populate_existing=True)
        )
    )


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


def beat(*, db: Session, worker: str, capacity: int, lease_seconds: int) -> list[int]:
    """Say we are alive; return the capacities of every live worker, ours included."""
    now = utcnow()
    seen = db.execute(
        update(SyncWorkerBeat)
        .where(SyncWorkerBeat.worker_id == worker)
        .values(seen_at=now, capacity=capacity)
    )
    if seen.rowcount == 0:
        db.add(SyncWorkerBeat(worker_id=worker, capacity=capacity, seen_at=now))
        db.flush()
    db.execute(
        delete(SyncWorkerBeat).where(
            SyncWorkerBeat.seen_at < now - timedelta(seconds=FORGET_AFTER_LEASES * lease_seconds)
        )
    )
    return list(
        db.scalars(
            select(SyncWorkerBeat.capacity).where(
                SyncWorkerBeat.seen_at >= now - timedelta(seconds=lease_seconds)
            )
        )
    )


def fair_share(*, db: Session, capacities: list[int], mine: int) -> int:
    """How many mailboxes this worker should hold: an even split, capped workers aside.

    Water-filling: capped workers take their cap, the rest share what is left evenly
    (rounded up, so nothing is left unclaimed). Every worker computes the same split.
    """
    remaining = db.scalar(select(func.count()).select_from(Mailbox)) or 0
    ordered = sorted(capacities)
    for index, capacity in enumerate(ordered):
        even = math.ceil(remaining / (len(ordered) - index))
        if capacity >= even:
            return min(mine, even)
        remaining -= capacity
    return mine


def forget(*, db: Session, worker: str) -> None:
    """A worker stopping cleanly leaves the count at once."""
    db.execute(delete(SyncWorkerBeat).where(SyncWorkerBeat.worker_id == worker))
