"""sealed values bound to their row; push tokens sealed

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:00:00

Until now a sealed value was bound to its column only, so a ciphertext copied from one row
into another opened there (issue 13.13). This re-seals every stored value with its column
and its row's public id as associated data, and seals the devices' push tokens, which were
kept in clear.

It runs inside `flask --app mobile_api db upgrade` with the data key the app uses; run on
its own, it reads ESTAFETTE_DATA_KEY the way the app does (environment, `.env`, `var/`).
The key is needed only when there are values to re-seal: an empty database upgrades
without one.
"""

from collections.abc import Callable, Iterator

import sqlalchemy as sa
from alembic import op

from backend.storage import encryption

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CHUNK = 1000

# (table, column, the column's sealing context): every sealed column 0001/0002 created.
SEALED = (
    ("users", "totp_secret", "users.totp_secret"),
    ("devices", "push_key", "devices.push_key"),
    ("mailboxes", "imap_secret", "mailboxes.imap_secret"),
    ("mailboxes", "imap_certificate", "mailboxes.imap_certificate"),
    ("mailboxes", "smtp_secret", "mailboxes.smtp_secret"),
    ("messages", "subject", "messages.subject"),
    ("messages", "sender", "messages.sender"),
    ("messages", "recipients", "messages.recipients"),
    ("messages", "message_id_header", "messages.message_id"),
    ("messages", "mss_headers", "messages.mss_headers"),
    ("messages", "patient", "messages.patient"),
    ("messages", "receipts", "messages.receipts"),
)
TOKEN_CONTEXT = "devices.push_token"  # noqa: S105 (a context name, not a secret)


def _require_data_key() -> None:
    """The app's data key: already installed by `db upgrade`, else read from the settings."""
    if not encryption.has_data_key():
        from backend.config import load_settings

        encryption.set_data_keys(load_settings().data_keys)


def _rows(table: str, column: str) -> Iterator[list[sa.Row]]:
    """(id, public_id, value) of the rows holding a value, a chunk at a time, by id."""
    t = sa.table(table, sa.column("id"), sa.column("public_id"), sa.column(column))
    last = 0
    while True:
        chunk = (
            op.get_bind()
            .execute(
                sa.select(t.c.id, t.c.public_id, t.c[column])
                .where(t.c.id > last, t.c[column].is_not(None))
                .order_by(t.c.id)
                .limit(CHUNK)
            )
            .all()
        )
        if not chunk:
            return
        yield chunk
        last = chunk[-1][0]


def _reseal(
    table: str, column: str, convert: Callable[[str, bytes], bytes], *, value_type: sa.types
) -> None:
    """Rewrite every value of a column through `convert(public_id, stored)`."""
    t = sa.table(table, sa.column("id"), sa.column(column, value_type))
    update = t.update().where(t.c.id == sa.bindparam("row")).values({column: sa.bindparam("v")})
    for chunk in _rows(table, column):
        _require_data_key()
        values = []
        for row_id, public_id, stored in chunk:
            try:
                values.append({"row": row_id, "v": convert(public_id, stored)})
            except encryption.DataKeyError as exc:
                # Ids only: the value itself may be health data.
                raise encryption.DataKeyError(
                    f"{table}.{column} of row {row_id} does not open with this data key; "
                    "set the ESTAFETTE_DATA_KEY that sealed it and run the upgrade again"
                ) from exc
        op.get_bind().execute(update, values)


def _to_rows(context: str) -> Callable[[str, bytes], bytes]:
    def convert(public_id: str, stored: bytes) -> bytes:
        plain = encryption.decrypt(bytes(stored), context.encode())
        return encryption.encrypt(plain, encryption.row_context(context, public_id))

    return convert


def _to_columns(context: str) -> Callable[[str, bytes], bytes]:
    def convert(public_id: str, stored: bytes) -> bytes:
        plain = encryption.decrypt(bytes(stored), encryption.row_context(context, public_id))
        return encryption.encrypt(plain, context.encode())

    return convert


def _replace_push_token(new_type: sa.types, convert: Callable[[str, bytes | str], object]):
    """Swap devices.push_token for a column of `new_type`, carrying each token through.

    Drop and add rather than ALTER TYPE: SQLite cannot change a type in place, and a batch
    copy of `devices` would, with foreign keys on, cascade-delete its push deliveries.
    Every token is converted before the first DDL, so a bad key changes nothing.
    """
    tokens = [
        {"row": row_id, "v": convert(public_id, stored)}
        for chunk in _rows("devices", "push_token")
        for row_id, public_id, stored in chunk
    ]
    op.drop_column("devices", "push_token")
    op.add_column("devices", sa.Column("push_token", new_type, nullable=True))
    t = sa.table("devices", sa.column("id"), sa.column("push_token", new_type))
    if tokens:
        op.get_bind().execute(
            t.update().where(t.c.id == sa.bindparam("row")).values(push_token=sa.bindparam("v")),
            tokens,
        )


def _seal_token(public_id: str, token: str) -> bytes:
    _require_data_key()
    return encryption.encrypt(token.encode(), encryption.row_context(TOKEN_CONTEXT, public_id))


def _open_token(public_id: str, sealed: bytes) -> str:
    _require_data_key()
    return encryption.decrypt(
        bytes(sealed), encryption.row_context(TOKEN_CONTEXT, public_id)
    ).decode()


def upgrade() -> None:
    for table, column, context in SEALED:
        _reseal(table, column, _to_rows(context), value_type=sa.LargeBinary())
    _replace_push_token(sa.LargeBinary(), _seal_token)


def downgrade() -> None:
    _replace_push_token(sa.String(length=4096), _open_token)
    for table, column, context in SEALED:
        _reseal(table, column, _to_columns(context), value_type=sa.LargeBinary())
