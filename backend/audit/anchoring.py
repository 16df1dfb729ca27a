"""Anchoring the trail outside the database: writing, checking and proving signed checkpoints.

Who writes: the process that appends a record. `AuditTrail.record` calls `Checkpointer.
maybe_write` after its commit, which signs a new tree head once N records
(ESTAFETTE_AUDIT_CHECKPOINT_RECORDS) are uncovered or the last head is M seconds old
(ESTAFETTE_AUDIT_CHECKPOINT_SECONDS). The head row lock the writers already share picks one
signer; the frontier of the last head, kept on that row, makes each checkpoint cost the new
records only. For quiet hours, `flask audit checkpoint` on a systemd timer covers what
is left. The signing key is a file the database never sees.

Where to: an append-only file (O_APPEND, fsynced) and syslog for the SIEM. The database
copy (size, frontier) is a convenience; `verify_checkpoints` trusts the file only.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.orm import Session

from backend.audit.checkpoints import Checkpoint, sign_tree_head
from backend.audit.merkle import Frontier, Tree, leaf_hash
from backend.config import Settings
from backend.storage.models import AuditChainHead, AuditRecord, utcnow

log = logging.getLogger("estafette.audit")

DEFAULT_KEY_NAME = "estafette_audit_signing_key.pem"
_HEAD = AuditChainHead.__table__
_RECORDS = AuditRecord.__table__
_BATCH = 20000


class TreeUnavailable(RuntimeError):
    """The records cannot give the tree (a gap, a broken link, an unknown purged prefix)."""


def signing_key_path(settings: Settings) -> Path:
    return settings.audit_signing_key or settings.var_dir / DEFAULT_KEY_NAME


def load_signing_key(settings: Settings) -> Ed25519PrivateKey:
    """ESTAFETTE_AUDIT_SIGNING_KEY, or one generated once into var/ with a warning (demo)."""
    path = signing_key_path(settings)
    if not path.is_file() and settings.audit_signing_key is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process of this gateway made it first: use theirs
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            log.warning(
                "ESTAFETTE_AUDIT_SIGNING_KEY was not set: generated one into %s. "
                "Set it explicitly in production, on a file the database host cannot read.",
                path,
            )
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TreeUnavailable(f"{path} does not hold an Ed25519 private key")
    return key


def public_key_of(settings: Settings) -> Ed25519PublicKey:
    return load_signing_key(settings).public_key()


# -- where checkpoints go ---------------------------------------------------------------


class CheckpointSink:
    """The append-only file and, when configured, syslog (/dev/log or host:port, UDP)."""

    def __init__(self, path: Path, syslog_address: str | None) -> None:
        self.path = path
        self._syslog = None
        if syslog_address:
            address: Any = syslog_address
            if not syslog_address.startswith("/"):
                host, _, port = syslog_address.rpartition(":")
                address = (host, int(port))
            self._syslog = logging.handlers.SysLogHandler(
                address=address, facility=logging.handlers.SysLogHandler.LOG_AUTHPRIV
            )
            self._syslog.ident = "estafette-audit: "

    def publish(self, checkpoint: Checkpoint) -> None:
        """Append and fsync one line; raises if the file cannot take it (never lose silently)."""
        line = json.dumps(checkpoint.to_json(), sort_keys=True, separators=(",", ":")) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line.encode())  # one write(2) with O_APPEND: lines never interleave
            os.fsync(fd)
        finally:
            os.close(fd)
        if self._syslog is not None:
            record = logging.LogRecord(
                "estafette.audit.checkpoint", logging.INFO, __file__, 0, line.strip(), None, None
            )
            self._syslog.handle(record)


# -- reading the tree from the records ----------------------------------------------------


def _frontier(size: int, encoded: str) -> Frontier:
    try:
        return Frontier.from_hex(size, json.loads(encoded))
    except ValueError:
        raise TreeUnavailable(
            f"the Merkle frontier of the first {size} records is not known "
            "(purged before checkpoints existed)"
        ) from None


def _leaf_rows(
    connection: Connection | Session, after_id: int, until_id: int
) -> Iterator[tuple[int, str, str]]:
    while after_id < until_id:
        rows = connection.execute(
            select(_RECORDS.c.id, _RECORDS.c.prev_hash, _RECORDS.c.hash)
            .where(_RECORDS.c.id > after_id, _RECORDS.c.id <= until_id)
            .order_by(_RECORDS.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        yield from rows
        after_id = rows[-1].id


def _checked_leaves(
    connection: Connection | Session, after_id: int, until_id: int, prev_hash: str | None
) -> Iterator[bytes]:
    """Leaf hashes of records (after_id, until_id], refusing gaps and broken links."""
    expected_id = after_id + 1
    for row in _leaf_rows(connection, after_id, until_id):
        if row.id != expected_id:
            raise TreeUnavailable(f"audit record {expected_id} is missing")
        if prev_hash is not None and row.prev_hash != prev_hash:
            raise TreeUnavailable(f"audit record {row.id} does not link to its predecessor")
        prev_hash, expected_id = row.hash, row.id + 1
        yield leaf_hash(bytes.fromhex(row.hash))
    if expected_id != until_id + 1:
        raise TreeUnavailable(f"audit record {expected_id} is missing")


def _hash_of(connection: Connection | Session, record_id: int, head: Any) -> str:
    if record_id == head.anchor_id:
        return head.anchor_hash
    return connection.execute(select(_RECORDS.c.hash).where(_RECORDS.c.id == record_id)).scalar()


def frontier_at(connection: Connection | Session, head: Any, size: int) -> Frontier:
    """The frontier of the first `size` records: for a purge to keep as its anchor."""
    start = (
        _frontier(head.checkpoint_size, head.checkpoint_frontier)
        if head.anchor_id <= head.checkpoint_size <= size
        else _frontier(head.anchor_id, head.anchor_frontier)
    )
    start.extend(_checked_leaves(connection, start.size, size, None))
    return start


# -- writing --------------------------------------------------------------------------------


class Checkpointer:
    """Signs a tree head every N records or M seconds and publishes it outside the database."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._every = settings.audit_checkpoint_records
        self._period = timedelta(seconds=settings.audit_checkpoint_seconds)
        self._key: Ed25519PrivateKey | None = None
        self._sink: CheckpointSink | None = None
        self._setup = threading.Lock()

    def due(self, last_id: int, checkpoint_size: int, checkpoint_at: datetime | None) -> bool:
        """Are there records the last head does not cover, N of them or for M seconds?"""
        if last_id <= checkpoint_size:
            return False
        if last_id - checkpoint_size >= self._every:
            return True
        return checkpoint_at is None or utcnow() - checkpoint_at >= self._period

    def maybe_write(
        self, last_id: int, checkpoint_size: int, checkpoint_at: datetime | None
    ) -> None:
        """After an append: write a checkpoint when due. Failures are logged, never raised:
        the action is recorded already, and the next append or the timer tries again."""
        if not self.due(last_id, checkpoint_size, checkpoint_at):
            return
        try:
            self.write()
        except Exception:
            log.exception("audit checkpoint failed; records stay uncovered until the next one")

    def _ready(self) -> tuple[Ed25519PrivateKey, CheckpointSink]:
        with self._setup:
            if self._key is None or self._sink is None:
                self._key = load_signing_key(self._settings)
                self._sink = CheckpointSink(
                    self._settings.audit_checkpoint_file, self._settings.audit_syslog
                )
            return self._key, self._sink

    def write(self, *, when: str = "due") -> Checkpoint | None:
        """Sign and publish the current tree head, or None when there is nothing to sign.

        `when`: "due" (N records or M seconds: another process may just have signed),
        "uncovered" (any record the last head does not cover: the timer), "always" (a fresh
        timestamp even for an idle trail).
        """
        if when not in ("due", "uncovered", "always"):
            raise ValueError(f"unknown checkpoint policy {when!r}")
        key, sink = self._ready()
        with self._engine.begin() as connection:
            # The writers' lock (AuditTrail.record): the head cannot move while we sign it.
            connection.execute(update(_HEAD).where(_HEAD.c.id == 1).values(last_id=_HEAD.c.last_id))
            head = connection.execute(select(_HEAD).where(_HEAD.c.id == 1)).one()
            uncovered = head.last_id > head.checkpoint_size
            if (when == "uncovered" and not uncovered) or (
                when == "due"
                and not self.due(head.last_id, head.checkpoint_size, head.checkpoint_at)
            ):
                return None
            if head.checkpoint_size >= head.anchor_id:
                frontier = _frontier(head.checkpoint_size, head.checkpoint_frontier)
            else:
                frontier = _frontier(head.anchor_id, head.anchor_frontier)
            if frontier.size > head.last_id:
                raise TreeUnavailable("the trail is shorter than its last checkpoint")
            previous = _hash_of(connection, frontier.size, head) if frontier.size else None
            frontier.extend(_checked_leaves(connection, frontier.size, head.last_id, previous))
            now = utcnow()
            checkpoint = sign_tree_head(key, frontier.size, frontier.root(), now)
            sink.publish(checkpoint)  # before the commit: a head the database knows is out
            connection.execute(
                update(_HEAD)
                .where(_HEAD.c.id == 1)
                .values(
                    checkpoint_size=frontier.size,
                    checkpoint_frontier=json.dumps(frontier.to_hex()),
                    checkpoint_at=now,
                )
            )
        log.info("audit checkpoint tree_size=%d", checkpoint.tree_size)
        return checkpoint

    def run(self, stop: threading.Event) -> None:
        """Cover quiet hours in the embedded mode (production: the systemd timer)."""
        while not stop.wait(self._period.total_seconds()):
            try:
                self.write(when="uncovered")
            except Exception:
                log.exception("audit checkpoint failed; records stay uncovered until the next one")


# -- checking and proving -------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointVerdict:
    ok: bool
    checked: int
    tree_size: int = 0
    reason: str | None = None


def verify_checkpoints(
    session: Session, checkpoints: Sequence[Checkpoint], public_key: Ed25519PublicKey
) -> CheckpointVerdict:
    """Recompute the Merkle root at each checkpoint's size from the records in the table.

    Checkpoints that only cover purged records are skipped; every other one must carry a
    valid signature and match the records exactly.
    """
    head = session.get(AuditChainHead, 1, populate_existing=True)
    for checkpoint in checkpoints:
        if not checkpoint.valid_under(public_key):
            return CheckpointVerdict(
                False, 0, reason=f"checkpoint of size {checkpoint.tree_size}: bad signature"
            )
    pending = sorted(
        (c for c in checkpoints if c.tree_size >= head.anchor_id), key=lambda c: c.tree_size
    )
    if not pending:
        return CheckpointVerdict(True, 0)
    if pending[-1].tree_size > head.last_id:
        return CheckpointVerdict(
            False,
            0,
            reason=f"records {head.last_id + 1}..{pending[-1].tree_size} were signed and are gone",
        )
    frontier = _frontier(head.anchor_id, head.anchor_frontier)
    checked, covered = 0, head.anchor_id
    try:
        leaves = _checked_leaves(session, frontier.size, pending[-1].tree_size, None)
        for checkpoint in pending:
            while frontier.size < checkpoint.tree_size:
                frontier.append(next(leaves))
            if frontier.root() != checkpoint.root_hash:
                return CheckpointVerdict(
                    False,
                    checked,
                    checkpoint.tree_size,
                    f"records {covered + 1}..{checkpoint.tree_size} differ from the checkpoint "
                    f"signed at {checkpoint.timestamp}",
                )
            checked, covered = checked + 1, checkpoint.tree_size
    except (TreeUnavailable, StopIteration) as exc:
        return CheckpointVerdict(False, checked, covered, str(exc) or "records missing")
    return CheckpointVerdict(True, checked, covered)


def prove_inclusion(session: Session, record_id: int, checkpoint: Checkpoint) -> dict[str, Any]:
    """The inclusion proof of one record in a signed tree head (RFC 9162 §2.1.3), as JSON."""
    head = session.get(AuditChainHead, 1, populate_existing=True)
    if not head.anchor_id < record_id <= checkpoint.tree_size:
        raise TreeUnavailable(f"record {record_id} is not in the tree of this checkpoint")
    prefix = _frontier(head.anchor_id, head.anchor_frontier)
    leaves = list(_checked_leaves(session, prefix.size, checkpoint.tree_size, None))
    tree = Tree(prefix, leaves)
    if tree.root() != checkpoint.root_hash:
        raise TreeUnavailable("the records no longer match the signed checkpoint")
    record_hash = session.scalar(select(AuditRecord.hash).where(AuditRecord.id == record_id))
    return {
        "leaf_index": record_id - 1,
        "tree_size": checkpoint.tree_size,
        "record_hash": record_hash,
        "leaf_hash": leaves[record_id - 1 - prefix.size].hex(),
        "audit_path": [node.hex() for node in tree.path(record_id - 1)],
        "checkpoint": checkpoint.to_json(),
    }
