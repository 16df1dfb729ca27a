"""directory_words and a word index on directory_entries: a full name found at once

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 08:40:00

`directory_words` holds each distinct searchable word with the number of entries that have
it, so a search of several words knows which are rare before it reads any entry. On
PostgreSQL, a GIN index over the entry's words (`array_to_tsvector`, no parser, no
dictionary: the words are folded by the importer) intersects rare words' entries without
visiting the common ones. SQLite has no such index and searches as before.

Not expand-only: an older build's import would swap in entries without refreshing
`directory_words`, and this build expands a typed prefix to the words listed there.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

WORDS_INDEX = "ix_directory_entries_words"
WORDS_EXPRESSION = "array_to_tsvector(string_to_array(ltrim(words), ' '))"


def upgrade() -> None:
    op.create_table(
        "directory_words",
        sa.Column("term", sa.String(length=64), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("term", name=op.f("pk_directory_words")),
    )
    op.execute(  # a directory imported before this revision
        "INSERT INTO directory_words (term, entries)"
        " SELECT term, count(*) FROM directory_terms GROUP BY term"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE INDEX {WORDS_INDEX} ON directory_entries USING gin ({WORDS_EXPRESSION})"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {WORDS_INDEX}")
    op.drop_table("directory_words")
