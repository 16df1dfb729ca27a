"""Searching the trail: by actor, action, mailbox and time, newest first, keyset-paged.

The (actor|mailbox|action, occurred_at, id) indexes make each page an index range scan,
whatever the size of the trail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, tuple_
from sqlalchemy.orm import Session

from backend.storage.models import AuditRecord


@dataclass(frozen=True)
class AuditQuery:
    """Filters; `action` ending in `*` matches a prefix (`admin.*`)."""

    actor: str | None = None
    action: str | None = None
    mailbox: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _filtered(query: AuditQuery) -> Select:
    statement = select(AuditRecord)
    if query.actor:
        statement = statement.where(AuditRecord.actor == query.actor)
    if query.action:
        if query.action.endswith("*"):
            # LIKE 'prefix%' with the prefix escaped: right under any collation.
            statement = statement.where(
                AuditRecord.action.startswith(query.action[:-1], autoescape=True)
            )
        else:
            statement = statement.where(AuditRecord.action == query.action)
    if query.mailbox:
        statement = statement.where(AuditRecord.mailbox == query.mailbox)
    if query.since:
        statement = statement.where(AuditRecord.occurred_at >= query.since)
    if query.until:
        statement = statement.where(AuditRecord.occurred_at < query.until)
    return statement


def search(
    *,
    db: Session,
    query: AuditQuery,
    limit: int,
    after: tuple[datetime, int] | None = None,
) -> tuple[list[AuditRecord], tuple[datetime, int] | None]:
    """One page, newest first, and the key to continue from (None at the end)."""
    statement = _filtered(query)
    if after is not None:
        statement = statement.where(
            tuple_(AuditRecord.occurred_at, AuditRecord.id) < tuple_(after[0], after[1])
        )
    rows = list(
        db.scalars(
            statement.order_by(AuditRecord.occurred_at.desc(), AuditRecord.id.desc()).limit(
                limit + 1
            )
        )
    )
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, (rows[-1].occurred_at, rows[-1].id)


def details_of(record: AuditRecord) -> dict[str, Any]:
    """The record's details as a mapping (stored as canonical JSON text)."""
    return json.loads(record.details) if record.details else {}
