"""The one audit writer. Every access and action on a mailbox goes through `AuditTrail.record`.

Records name actors, devices, mailboxes and messages by opaque id and never hold message
content. Each record carries the hash of the previous one (SHA-256 over a canonical JSON
encoding), so an edited or deleted row breaks the chain at a known place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Row, bindparam, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from backend.audit.group_commit import GroupCommit
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
# Taking the next ids from the head row also takes its lock (PostgreSQL row lock, SQLite
# write lock), so two writers can never chain onto the same record.
_TAKE_IDS = (
    update(_HEAD)
    .where(_HEAD.c.id == 1)  # created by the first migration
    .values(last_id=_HEAD.c.last_id + bindparam("count"))
    .returning(_HEAD.c.last_id, _HEAD.c.last_hash, _HEAD.c.checkpoint_size, _HEAD.c.checkpoint_at)
)
_APPEND = insert(_RECORDS)
_ADVANCE_HEAD = update(_HEAD).where(_HEAD.c.id == 1).values(last_hash=bindparam("new_hash"))


class AuditTrail:
    """Appends records in short transactions, so the chain lock is held briefly.

    The threads of a process append by group commit (backend/audit/group_commit.py): one
    transaction extends the chain by everything they handed in meanwhile, and each caller
    returns once that transaction committed. The chain head is locked once per batch.
    With a `Checkpointer`, the append that makes a signed checkpoint due also writes it.
    """

    def __init__(
        self, session_factory: sessionmaker[Session], checkpoints: Checkpointer | None = None
    ) -> None:
        self._engine: Engine = session_factory.kw["bind"]
        self.checkpoints = checkpoints
        self._group: GroupCommit[AuditRecord, Any] = GroupCommit(self._write_batch)

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
        entry = self.entry(
            action,
            actor=actor,
            outcome=outcome,
            target_type=target_type,
            target=target,
            mailbox=mailbox,
            details=details,
            at=at,
        )
        self.append([entry], within=within)
        return entry

    @staticmethod
    def entry(
        action: str,
        *,
        actor: Actor = SYSTEM,
        outcome: Outcome | str = Outcome.OK,
        target_type: str | None = None,
        target: str | None = None,
        mailbox: str | None = None,
        details: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditRecord:
        """A record to `append`, checked now (outcome, details); chained when appended."""
        return AuditRecord(
            occurred_at=at,  # None: the time it is chained
            actor=actor.user,
            device=actor.device,
            action=action,
            outcome=Outcome(outcome).value,  # ValueError outside the vocabulary
            target_type=target_type,
            target=target,
            mailbox=mailbox,
            source_ip=actor.source_ip,
            details=_encode_details(details),
        )

    def append(self, entries: list[AuditRecord], *, within: Session | None = None) -> None:
        """Chain `entries` in this order, one after the other; durable when this returns.

        `within`: in that session's open transaction, committed by the caller (`record`)."""
        if not entries:
            return
        started = time.perf_counter()
        if within is not None:
            _chain(within.connection(), entries)
        else:
            self._group.submit(entries)
        AUDIT_WRITE_LATENCY.observe(time.perf_counter() - started)
        # The operational log gets the same ids and codes as the trail, never more.
        for entry in entries:
            log.info(
                "%s %s actor=%s device=%s target=%s mailbox=%s",
                entry.action,
                entry.outcome,
                entry.actor,
                entry.device,
                entry.target,
                entry.mailbox,
            )

    def _write_batch(self, entries: list[AuditRecord]) -> None:
        """One transaction, one commit for a whole group; then a checkpoint if one is due."""
        if self._engine.dialect.name == "postgresql":
            last_id, checkpoint_size, checkpoint_at = _chain_pipelined(self._engine, entries)
        else:
            with self._engine.begin() as connection:
                head = _chain(connection, entries)
            last_id, checkpoint_size, checkpoint_at = (
                head.last_id,
                head.checkpoint_size,
                head.checkpoint_at,
            )
        if self.checkpoints is not None:
            self.checkpoints.maybe_write(last_id, checkpoint_size, checkpoint_at)


def _chain(connection: Connection, entries: list[AuditRecord]) -> Row:
    """Take ids for `entries` from the head (locking it), hash them onto the chain, insert
    them and advance the head; returns the head row as the update left it."""
    head = connection.execute(_TAKE_IDS, {"count": len(entries)}).one()
    prev_hash, now = head.last_hash, utcnow()
    for offset, entry in enumerate(entries, start=head.last_id - len(entries) + 1):
        entry.id = offset
        entry.occurred_at = entry.occurred_at or now
        entry.prev_hash = prev_hash
        entry.hash = prev_hash = chain_hash(entry)
    rows = [{column.key: getattr(e, column.key) for column in _RECORD_COLUMNS} for e in entries]
    connection.execute(_APPEND, rows)
    connection.execute(_ADVANCE_HEAD, {"new_hash": prev_hash})
    return head


# The same three statements in PostgreSQL's words, for psycopg's pipeline mode.
_PG_TAKE_IDS = (
    "UPDATE audit_chain_head SET last_id = last_id + %(count)s WHERE id = 1"
    " RETURNING last_id, last_hash, checkpoint_size, checkpoint_at"
)
_PG_APPEND = "INSERT INTO audit_records ({}) VALUES ({})".format(  # noqa: S608 (our columns)
    ", ".join(column.name for column in _RECORD_COLUMNS),
    ", ".join(f"%({column.key})s" for column in _RECORD_COLUMNS),
)
_PG_ADVANCE_HEAD = "UPDATE audit_chain_head SET last_hash = %(new_hash)s WHERE id = 1"


def _chain_pipelined(
    engine: Engine, entries: list[AuditRecord]
) -> tuple[int, int, datetime | None]:
    """`_chain` in one transaction of two round trips (PostgreSQL): returns the head's
    last id, checkpoint size and checkpoint time as the update left them.

    Why: the batch's transaction holds the chain head's row lock, which every api process
    waits on, and each round trip on the way is CPU for both sides. psycopg's pipeline mode
    sends BEGIN with the head's update (the one answer we need before hashing), then the
    inserts, the head's new hash and COMMIT together. Durable when this returns, as before.
    """
    pooled = engine.raw_connection()  # the pool's checkout (and its ping when idle)
    try:
        connection = pooled.driver_connection
        with connection.pipeline(), connection.cursor() as cursor:
            cursor.execute(_PG_TAKE_IDS, {"count": len(entries)})
            last_id, prev_hash, checkpoint_size, checkpoint_at = cursor.fetchone()
            now = utcnow()
            for offset, entry in enumerate(entries, start=last_id - len(entries) + 1):
                entry.id = offset
                entry.occurred_at = entry.occurred_at or now
                entry.prev_hash = prev_hash
                entry.hash = prev_hash = chain_hash(entry)
            cursor.executemany(_PG_APPEND, [_pg_row(entry) for entry in entries])
            cursor.execute(_PG_ADVANCE_HEAD, {"new_hash": prev_hash})
            # A statement, not commit(): commit() waits on its own sync, then leaving the
            # pipeline sends one more. This way the pipeline's closing sync carries it.
            cursor.execute("COMMIT")
    except engine.dialect.loaded_dbapi.Error as error:
        _discard_failed(pooled, error)
        raise DBAPIError.instance(
            _PG_APPEND, None, error, engine.dialect.loaded_dbapi.Error, hide_parameters=True
        ) from error
    except BaseException:
        _discard_failed(pooled, None)
        raise
    pooled.close()  # back to the pool
    return last_id, checkpoint_size, _as_utc(checkpoint_at)


def _pg_row(entry: AuditRecord) -> dict[str, Any]:
    row = {column.key: getattr(entry, column.key) for column in _RECORD_COLUMNS}
    row["occurred_at"] = entry.occurred_at.astimezone(UTC).replace(tzinfo=None)  # UTCDateTime
    return row


def _as_utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)  # as UTCDateTime reads


def _discard_failed(pooled: Any, error: Exception | None) -> None:
    """After a failed batch: roll back, or drop the connection if it is broken."""
    connection = pooled.driver_connection
    try:
        if error is not None and connection.closed:
            raise error
        connection.rollback()
        pooled.close()
    except Exception:
        pooled.invalidate()  # closed for good: the pool opens a new one


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
