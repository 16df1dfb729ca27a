"""directory_entries and directory_terms: the national MSSanté directory, searchable

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 05:30:00

Filled by `flask --app mobile_api directory import`, which loads new tables beside these
and swaps them in one transaction. Words are folded (accents, case) by the importer, the
same way on both engines, so no database extension is needed.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "directory_entries",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=3), nullable=False),
        sa.Column("address", sa.String(length=254), nullable=False),
        sa.Column("domain", sa.String(length=254), nullable=False),
        sa.Column("national_id", sa.String(length=32), nullable=True),
        sa.Column("civility", sa.String(length=32), nullable=True),
        sa.Column("last_name", sa.String(length=200), nullable=True),
        sa.Column("first_name", sa.String(length=200), nullable=True),
        sa.Column("profession", sa.String(length=200), nullable=True),
        sa.Column("specialty", sa.String(length=200), nullable=True),
        sa.Column("organisation", sa.String(length=300), nullable=True),
        sa.Column("service", sa.String(length=300), nullable=True),
        sa.Column("street", sa.String(length=300), nullable=True),
        sa.Column("postcode", sa.String(length=16), nullable=True),
        sa.Column("city", sa.String(length=200), nullable=True),
        sa.Column("words", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directory_entries")),
    )
    op.create_index(
        op.f("ix_directory_entries_address"), "directory_entries", ["address"], unique=False
    )
    op.create_table(
        "directory_terms",
        sa.Column("term", sa.String(length=64), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("domain", sa.String(length=254), nullable=False),
        sa.PrimaryKeyConstraint("term", "entry_id", name=op.f("pk_directory_terms")),
    )
    op.create_index(
        "ix_directory_terms_domain_term", "directory_terms", ["domain", "term"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_directory_terms_domain_term", table_name="directory_terms")
    op.drop_table("directory_terms")
    op.drop_index(op.f("ix_directory_entries_address"), table_name="directory_entries")
    op.drop_table("directory_entries")
