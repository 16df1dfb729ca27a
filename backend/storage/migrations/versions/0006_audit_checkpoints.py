"""audit checkpoints: the Merkle frontier of the last signed tree head and of the purge anchor

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:00:00

Columns carry server defaults so that a database already at 0002 upgrades in place: no
checkpoint yet, and an empty frontier (right for a trail that was never purged).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_chain_head", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("anchor_frontier", sa.Text(), server_default="[]", nullable=False)
        )
        batch_op.add_column(
            sa.Column("checkpoint_size", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("checkpoint_frontier", sa.Text(), server_default="[]", nullable=False)
        )
        batch_op.add_column(sa.Column("checkpoint_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_chain_head", schema=None) as batch_op:
        batch_op.drop_column("checkpoint_at")
        batch_op.drop_column("checkpoint_frontier")
        batch_op.drop_column("checkpoint_size")
        batch_op.drop_column("anchor_frontier")
