"""Re-seal every stored secret under the current data key, online and resumable.

`flask --app mobile_api keys rotate-data` runs it once the new key is first in
ESTAFETTE_DATA_KEYS on every process. It walks each table holding sealed fields in
primary-key batches, one short transaction per batch, and rewrites only the values another
key sealed: a second run (after a crash, or to check) skips what is done. Each write is a
compare-and-set on the old ciphertext, so a value the api or the sync worker rewrote
meanwhile (already under the current key) is left alone. The Message-ID lookup digests
follow the key and are recomputed with it. Nothing here logs or returns a value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.storage import encryption
from backend.storage.encryption import Sealed, SealedBytes
from backend.storage.models import Base, Message
from backend.store.receipts import message_id_digest

DEFAULT_BATCH = 200


@dataclass
class TableProgress:
    table: str
    rows: int = 0
    resealed: int = 0
    raced: int = 0  # rewritten by another process meanwhile: already current


def sealed_models() -> Iterator[tuple[type[Base], list[SealedBytes]]]:
    """Every mapped model with sealed fields, and those fields (found, not listed by hand)."""
    for mapper in sorted(Base.registry.mappers, key=lambda m: m.class_.__name__):
        model = mapper.class_
        fields = {
            name: attr
            for klass in reversed(model.__mro__)
            for name, attr in vars(klass).items()
            if isinstance(attr, SealedBytes)
        }
        if fields:
            yield model, list(fields.values())


def rotate_data(
    sessions: sessionmaker[Session],
    *,
    batch: int = DEFAULT_BATCH,
    progress: Callable[[TableProgress], None] = lambda _p: None,
) -> list[TableProgress]:
    """Re-seal what the current key did not seal; `progress` hears after every batch."""
    current = encryption.current_key_id()
    report = []
    for model, fields in sealed_models():
        done = TableProgress(model.__tablename__)
        columns = [getattr(model, field.column) for field in fields]
        last_id = 0
        while True:
            with sessions() as db:
                rows = db.execute(
                    select(model.id, model.public_id, *columns)
                    .where(model.id > last_id)
                    .order_by(model.id)
                    .limit(batch)
                ).all()
                for row in rows:
                    _reseal_row(db, model, fields, row, current, done)
                db.commit()
            if not rows:
                break
            last_id = rows[-1].id
            done.rows += len(rows)
            progress(done)
        report.append(done)
    return report


def _reseal_row(
    db: Session,
    model: type[Base],
    fields: list[SealedBytes],
    row: Any,
    current: str,
    done: TableProgress,
) -> None:
    old: dict[Any, bytes] = {}
    new: dict[Any, Any] = {}
    for index, field in enumerate(fields):
        sealed = row[2 + index]
        if sealed is None or encryption.key_id_of(sealed) == current:
            continue
        plain = field.open(row.public_id, sealed)
        column = getattr(model, field.column)
        old[column] = sealed
        new[column] = field.seal(row.public_id, plain)
        if model is Message and field.name == "message_id_header":
            new[Message.message_id_digest] = message_id_digest(plain)
    if not new:
        return
    changed = db.execute(
        update(model)
        .where(model.id == row.id, *(column == Sealed(value) for column, value in old.items()))
        .values(new)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount:
        done.resealed += 1
    else:
        done.raced += 1
