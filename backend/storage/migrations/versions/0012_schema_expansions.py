"""schema_expansions: which applied revisions only expand the schema, and on top of what

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 05:30:00

Rolling upgrades: a process runs on its own head, or on a schema one expand-only step
ahead of it. The older build cannot know the newer revision's id, so `db upgrade` records
here each applied revision the code declares expand-only (EXPAND_ONLY_REVISIONS in
backend/storage/database.py) with the revision it expands; the older build reads it.
This migration only adds a table: it is itself an expand step.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schema_expansions",
        sa.Column("revision", sa.String(length=32), nullable=False),
        sa.Column("expands", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("revision"),
    )


def downgrade() -> None:
    op.drop_table("schema_expansions")
