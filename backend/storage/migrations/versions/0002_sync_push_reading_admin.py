"""shared sync load, XOAUTH2, push preferences, message changes and receipts, audit paging

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 11:50:00

Columns added to existing tables carry a server default so that a database already at
0001 upgrades in place.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sync_workers",
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_sync_workers")),
    )

    # Audit search pages by (key, time, id): the id makes the keyset order total.
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        for name, column in (
            ("ix_audit_action_time", "action"),
            ("ix_audit_actor_time", "actor"),
            ("ix_audit_mailbox_time", "mailbox"),
        ):
            batch_op.drop_index(name)
            batch_op.create_index(name, [column, "occurred_at", "id"], unique=False)

    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("imap_token_url", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("imap_client_id", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("tombstones_purged_seq", sa.BigInteger(), nullable=False, server_default="0")
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quiet_start_minute", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("quiet_end_minute", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("quiet_timezone", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("on_call", sa.Boolean(), nullable=False, server_default=sa.false())
        )

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("receipts", sa.LargeBinary(), nullable=True))
        batch_op.create_index(
            "ix_messages_unread", ["mailbox_id", "folder_id", "seen"], unique=False
        )
        batch_op.create_index(
            "ix_messages_message_id_digest", ["mailbox_id", "message_id_digest"], unique=False
        )

    op.create_table(
        "message_tombstones",
        sa.Column("id", _ID, nullable=False),
        sa.Column("mailbox_id", _ID, nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailboxes.id"],
            name=op.f("fk_message_tombstones_mailbox_id_mailboxes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_tombstones")),
    )
    with op.batch_alter_table("message_tombstones", schema=None) as batch_op:
        batch_op.create_index(
            "ix_message_tombstones_change_seq", ["mailbox_id", "change_seq"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_message_tombstones_deleted_at"), ["deleted_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("message_tombstones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_tombstones_deleted_at"))
        batch_op.drop_index("ix_message_tombstones_change_seq")
    op.drop_table("message_tombstones")

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_message_id_digest")
        batch_op.drop_index("ix_messages_unread")
        batch_op.drop_column("receipts")
        batch_op.drop_column("message_id_digest")

    with op.batch_alter_table("users", schema=None) as batch_op:
        for column in ("on_call", "quiet_timezone", "quiet_end_minute", "quiet_start_minute"):
            batch_op.drop_column(column)

    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        for column in ("tombstones_purged_seq", "imap_client_id", "imap_token_url"):
            batch_op.drop_column(column)

    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        for name, column in (
            ("ix_audit_action_time", "action"),
            ("ix_audit_actor_time", "actor"),
            ("ix_audit_mailbox_time", "mailbox"),
        ):
            batch_op.drop_index(name)
            batch_op.create_index(name, [column, "occurred_at"], unique=False)

    op.drop_table("sync_workers")
