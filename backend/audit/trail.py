"""The one audit writer. Every access and action on a mailbox goes through `AuditTrail.record`.

Records name actors, devices, mailboxes and messages by opaque id and never hold message
content. Each record carries the hash of the previous one (SHA-256 over a canonical JSON
encoding), so an edited or deleted row breaks the chain at a known place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.metrics import AUDIT_WRITE_LATENCY
from backend.storage.models import AuditChainHead, AuditRecord, utcnow

if TYPE_CHECKING:
    from backend.audit.anchoring import Checkpointer

log = logging.getLogger("estafette.audit")

GENESIS = "0" * 64
# Detail values are ids, codes and counts. Anything longer is refused rather than stored,
# because a long free-text value is how content would sneak into the trail.
_MAX_DETAIL_VALUE = 120


class AuditDetailRefused(ValueError):
    """A caller tried to put something that looks like content in an audit record."""


def canonical_bytes(record: Any) -> bytes:
    """The exact bytes that are hashed: every field but the hash, in a fixed order.

    `record` is an AuditRecord or a row with the same column names.
    """
    fields = record_fields(record)
    fields["occurred_at"] = record.occurred_at.isoformat(timespec="microseconds")
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


# Every field of a record but its hash: what is hashed, and what the admin API shows.
RECORD_FIELDS = (
    "id",
    "occurred_at",
    "actor",
    "device",
    "action",
    "outcome",
    "target_type",
    "target",
    "mailbox",
    "source_ip",
    "details",
    "prev_hash",
)


def record_fields(record: Any) -> dict[str, Any]:
    """A record's fields (but its hash) by name, as stored."""
    return {name: getattr(record, name) for name in RECORD_FIELDS}


def chain_hash(record: Any) -> str:
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


def _encode_details(details: dict[str, Any] | None) -> str | None:
    if not details:
        return None
    for key, value in details.items():
        if not isinstance(value, str | int | bool | float | None):
            raise AuditDetailRefused(f"audit detail {key!r} must be a scalar")
        if isinstance(value, str) and len(value) > _MAX_DETAIL_VALUE:
            raise AuditDetailRefused(f"audit detail {key!r} is too long to be an id or a code")
    return json.dumps(details, sort_keys=True, separators=(",", ":"))


class Outcome(StrEnum):
    """The one outcome vocabulary of every audit record; a refusal's reason goes in its
    details as `code` or `reason`."""

    OK = "ok"
    REFUSED = "refused"  # 401, 403, 429, a lockout
    NOT_FOUND = "not_found"  # 404, also for someone else's object
    FAILED = "failed"  # anything else


@dataclass(frozen=True)
class Actor:
    """Who did it, from where: filled from the JWT and the request by the API layer."""

    user: str = "system"
    device: str | None = None
    source_ip: str | None = None


SYSTEM = Actor()


_RECORDS = AuditRecord.__table__
_HEAD = AuditChainHead.__table__
_RECORD_COLUMNS = tuple(_RECORDS.columns)
# Built once, executed with parameters: Core statements on the tables, with no ORM layer
# and no per-call value coercion, so a record costs its round trips and little else.
# Taking the next id from the head row also takes its lock (PostgreSQL row lock, SQLite
# write lock), so two writers can never chain onto the same record.
_TAKE_NEXT_ID = (
    update(_HEAD)
    .where(_HEAD.c.id == 1)  # created by the first migration
    .values(last_id=_HEAD.c.last_id + 1)
    .returning(_HEAD.c.last_id, _HEAD.c.last_hash, _HEAD.c.checkpoint_size, _HEAD.c.checkpoint_at)
)
_APPEND = insert(_RECORDS)
_ADVANCE_HEAD = update(_HEAD).where(_HEAD.c.id == 1).values(last_hash=bindparam("new_hash"))


class AuditTrail:
    """Appends records in their own short transaction, so the chain lock is held briefly.

    With a `Checkpointer`, the append that makes a signed checkpoint due also writes it.
    """

    def __init__(
        self, session_factory: sessionmaker[Session], checkpoints: Checkpointer | None = None
    ) -> None:
        self._engine: Engine = session_factory.kw["bind"]
        self.checkpoints = checkpoints

    def record(
        self,
        action: str,
        *,
        actor: Actor = SYSTEM,
        outcome: Outcome | str = Outcome.OK,
        target_type: str | None = None,
        target: str | None = None,
        mailbox: str | None = None,
        details: dict[str, Any] | None = None,
        at: datetime | None = None,
        within: Session | None = None,
    ) -> AuditRecord:
        """Append one record to the chain and return it.

        `within`: append in that session's open transaction, so that the change it records
        and the record commit together or not at all (admin changes). The chain head stays
        locked until the caller commits; a checkpoint waits for the next append."""
        outcome = Outcome(outcome).value  # ValueError outside the vocabulary
        encoded = _encode_details(details)
        started = time.perf_counter()
        if within is not None:
            context = contextlib.nullcontext(within.connection())
        else:
            context = self._engine.begin()
        with context as connection:
            head = connection.execute(_TAKE_NEXT_ID).one()
            entry = AuditRecord(
                id=head.last_id,
                occurred_at=at or utcnow(),
                actor=actor.user,
                device=actor.device,
                action=action,
                outcome=outcome,
                target_type=target_type,
                target=target,
                mailbox=mailbox,
                source_ip=actor.source_ip,
                details=encoded,
                prev_hash=head.last_hash,
            )
            entry.hash = chain_hash(entry)
            connection.execute(
                _APPEND, {column.key: getattr(entry, column.key) for column in _RECORD_COLUMNS}
            )
            connection.execute(_ADVANCE_HEAD, {"new_hash": entry.hash})
        AUDIT_WRITE_LATENCY.observe(time.perf_counter() - started)
        if self.checkpoints is not None and within is None:
            self.checkpoints.maybe_write(head.last_id, head.checkpoint_size, head.checkpoint_at)
        # The operational log gets the same ids and codes as the trail, never more.
        log.info(
            "%s %s actor=%s device=%s target=%s mailbox=%s",
            action,
            outcome,
            actor.user,
            actor.device,
            target,
            mailbox,
        )
        return entry


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    first_bad: int | None = None
    reason: str | None = None


# Plain columns, not ORM entities: a million rows verify in seconds, not minutes.
CHAIN_COLUMNS = (
    AuditRecord.id,
    AuditRecord.occurred_at,
    AuditRecord.actor,
    AuditRecord.device,
    AuditRecord.action,
    AuditRecord.outcome,
    AuditRecord.target_type,
    AuditRecord.target,
    AuditRecord.mailbox,
    AuditRecord.source_ip,
    AuditRecord.details,
    AuditRecord.prev_hash,
    AuditRecord.hash,
)


def walk_chain(
    session: Session,
    *,
    after_id: int,
    expected_prev: str,
    until_id: int | None = None,
    batch: int = 20000,
) -> tuple[VerifyResult, int, str]:
    """Check records after `after_id` (up to `until_id`) link to `expected_prev` and hash right.

    Returns the verdict with the id and hash of the last good record, so a caller can
    check that the walk ended where the chain head says it should.
    """
    count = 0
    while True:
        query = select(*CHAIN_COLUMNS).where(AuditRecord.id > after_id)
        if until_id is not None:
            query = query.where(AuditRecord.id <= until_id)
        rows = session.execute(query.order_by(AuditRecord.id).limit(batch)).all()
        if not rows:
            return VerifyResult(ok=True, records=count), after_id, expected_prev
        for row in rows:
            if row.prev_hash != expected_prev:
                verdict = VerifyResult(False, count, row.id, "previous record missing or altered")
                return verdict, after_id, expected_prev
            if chain_hash(row) != row.hash:
                return VerifyResult(False, count, row.id, "record altered"), after_id, expected_prev
            expected_prev, after_id = row.hash, row.id
            count += 1


def verify_chain(session: Session, batch: int = 20000) -> VerifyResult:
    """Recompute the whole chain from the anchor; name the first record that breaks it.

    The walk stops at the head read at the start, so records appended meanwhile by a live
    gateway are not mistaken for damage; a purge moving the anchor mid-walk restarts it.
    """
    for _attempt in range(3):
        head = session.get(AuditChainHead, 1, populate_existing=True)
        if head is None:
            return VerifyResult(ok=True, records=0)
        anchor_id, anchor_hash = head.anchor_id, head.anchor_hash
        last_id, last_hash = head.last_id, head.last_hash
        result, walked_id, walked_hash = walk_chain(
            session, after_id=anchor_id, expected_prev=anchor_hash, until_id=last_id, batch=batch
        )
        if result.ok and (walked_hash != last_hash or walked_id != last_id):
            result = VerifyResult(False, result.records, last_id, "latest records deleted")
        if result.ok:
            return result
        session.rollback()  # a fresh snapshot: did a purge move the anchor meanwhile?
        current = session.get(AuditChainHead, 1, populate_existing=True)
        if current is None or current.anchor_id == anchor_id:
            return result
    return result
