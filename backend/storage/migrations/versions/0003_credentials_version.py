"""users.credentials_version: tokens taken before a credential change are refused

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 09:00:00

Every token (mfa, access, refresh) carries the version it was issued under; a password
change, a TOTP reset or a disable bumps it. The server default lets a database at 0002
upgrade in place; tokens issued before the upgrade count as version 0.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("credentials_version", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("credentials_version")
