"""folders.import_baseline_uid: where a folder's first import began

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 09:00:00

UIDNEXT when the import of a folder began (first sync, or UIDVALIDITY reset). Messages
below it are old mail and never announced, even when the import resumes after a crash.
Nullable: folders imported before this revision keep their behaviour.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("folders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("import_baseline_uid", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("folders", schema=None) as batch_op:
        batch_op.drop_column("import_baseline_uid")
