"""outbox claims name their dispatcher, whose database session proves it alive

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 09:00:00

A nullable column: a database at 0002 upgrades in place, its pending events unclaimed.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("claimed_by")
