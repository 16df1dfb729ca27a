"""Mailbox leases: how sync workers share mailboxes without a coordinator of our own.

A worker holds a mailbox while its lease is fresh and renews it by heartbeat. On
PostgreSQL a lease also lives only as long as its worker's database session
(`backend.storage.liveness`): `claim` and `renew` hold it, and a killed worker's mailboxes
are free the moment PostgreSQL sees its connection close, not when the lease runs out.
The time lease stays for a worker alive but hung, and is all SQLite has. The others claim
free mailboxes with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so two claimers never block
each other; SQLite serialises writers by itself.

Workers also beat in `sync_workers` with their capacity, so each can compute the same fair
share for itself (`fair_share`): a worker that joins gets mailboxes released by the others,
and a dead worker's share grows back into the survivors' once its beat is stale.
"""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import Engine, delete, false, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from backend.storage import liveness
from backend.storage.models import Mailbox, SyncWorkerBeat, utcnow

# A worker's beat is forgotten this many lease periods after it stopped.
FORGET_AFTER_LEASES = 10


def claim(*, db: Session, worker: str, lease_seconds: int, limit: int) -> list[Mailbox]:
    """Take up to `limit` mailboxes whose lease is free or expired.

    The UPDATE re-checks that the lease is still free, so of two workers that picked the
    same candidates only the first writer wins them, on any engine: PostgreSQL locks the
    candidates (SKIP LOCKED lets the other claimer pass), SQLite serialises the writes.
    """
    _hold(db, worker)
    now = utcnow()
    free = or_(
        Mailbox.lease_owner.is_(None),
        Mailbox.lease_expires_at < now,
        _gone(db, Mailbox.lease_owner),
    )
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
    _hold(db, worker)
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
                SyncWorkerBeat.seen_at >= now - timedelta(seconds=lease_seconds),
                ~_gone(db, SyncWorkerBeat.worker_id),  # a killed worker's share is free at once
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
    """A worker stopping cleanly leaves the count at once, and ends its liveness session."""
    db.execute(delete(SyncWorkerBeat).where(SyncWorkerBeat.worker_id == worker))
    liveness.let_go(_engine(db), worker)


def _hold(db: Session, worker: str) -> None:
    liveness.hold(_engine(db), worker)


def _gone(db: Session, owner: ColumnElement[str | None]) -> ColumnElement[bool]:
    """`owner` is a worker whose database session ended (PostgreSQL; never on SQLite)."""
    if db.get_bind().dialect.name != "postgresql":
        return false()
    return liveness.orphaned(owner)


def _engine(db: Session) -> Engine:
    bind = db.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine
