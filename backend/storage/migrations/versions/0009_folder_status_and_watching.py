"""folders keep counts and whether watched; tombstones a digest; users a signature

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 01:00:00

Nullable columns: `messages`/`unseen` are filled at the next folder poll; a NULL
`watched` follows the default (every folder but Junk and Trash). A tombstone's
Message-ID digest lets a message arriving in another folder be taken for a move.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("folders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("messages", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("unseen", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("watched", sa.Boolean(), nullable=True))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signature", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("message_tombstones", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id_digest", sa.String(length=64), nullable=True))
        batch_op.create_index(
            "ix_message_tombstones_digest", ["mailbox_id", "message_id_digest"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("signature")
    with op.batch_alter_table("message_tombstones", schema=None) as batch_op:
        batch_op.drop_index("ix_message_tombstones_digest")
        batch_op.drop_column("message_id_digest")
    with op.batch_alter_table("folders", schema=None) as batch_op:
        batch_op.drop_column("watched")
        batch_op.drop_column("unseen")
        batch_op.drop_column("messages")
