"""Replace the directory with a new extraction, without a moment where searches see less.

The entries go into `*_new` tables beside the live ones; only once they are complete and
indexed are they swapped in, in one transaction. A search sees the old directory or the
new one, never an empty or half-loaded one. PostgreSQL: rows stream in with COPY, the
words tables (each entry's words; each word's count) are built by the server (`unnest`,
`GROUP BY`) while a second connection indexes the entries (two single-threaded builds on
two cores), the indexes after the load, then VACUUM (visibility map, statistics); the swap
renames the tables (a search waiting on the swap's lock re-resolves the name once it is
granted, so it reads the new table). SQLite (the demo): the rows are copied over in one
write transaction; WAL readers keep their snapshot meanwhile. Two imports never overlap
(a PostgreSQL advisory lock; SQLite's single writer).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import Engine, text

from backend.directory import words as vocabulary
from backend.directory.extraction import Entry, Tally
from backend.storage.models import DIRECTORY_WORDS_TSVECTOR

ENTRY_COLUMNS = (
    "id",
    "kind",
    "address",
    "domain",
    "national_id",
    "civility",
    "last_name",
    "first_name",
    "profession",
    "specialty",
    "organisation",
    "service",
    "street",
    "postcode",
    "city",
    "words",
)
_IMPORT_LOCK = 0x45_5354_4449_5231  # pg advisory lock key: "ESTDIR1"
_BATCH = 5000


class ImportRunning(RuntimeError):
    """Another import holds the directory: try again once it is done."""


@dataclass(frozen=True)
class ImportReport:
    entries: int
    duplicates: int
    malformed: dict[str, int]
    first_malformed_lines: tuple[int, ...]
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)  # PostgreSQL: seconds per step

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())


def entry_words(entry: Entry) -> list[str]:
    """Everything a user may type to find this mailbox."""
    return vocabulary.words_of(
        (
            entry.last_name,
            entry.first_name,
            entry.profession,
            entry.specialty,
            entry.organisation,
            entry.service,
            entry.street,
            entry.city,
            entry.postcode,
        )
    ) + [w for w in vocabulary.address_words(entry.address) if w]


def _rows(entries: Iterable[Entry]) -> Iterator[tuple]:
    for number, entry in enumerate(entries, start=1):
        found = list(dict.fromkeys(entry_words(entry)))
        yield (
            number,
            entry.kind,
            entry.address,
            entry.domain,
            entry.national_id,
            entry.civility,
            entry.last_name,
            entry.first_name,
            entry.profession,
            entry.specialty,
            entry.organisation,
            entry.service,
            entry.street,
            entry.postcode,
            entry.city,
            vocabulary.as_text(found),
        )


def replace_directory(engine: Engine, entries: Iterable[Entry], tally: Tally) -> ImportReport:
    """Load `entries` (read lazily, so `tally` is final afterwards) and swap them in."""
    started = time.monotonic()
    phases: dict[str, float] = {}
    if engine.dialect.name == "postgresql":
        _replace_postgresql(engine, entries, phases)
    else:
        _replace_sqlite(engine, entries)
    return ImportReport(
        entries=tally.entries,
        duplicates=tally.duplicates,
        malformed=dict(tally.malformed),
        first_malformed_lines=tuple(tally.first_malformed_lines),
        seconds=round(time.monotonic() - started, 3),
        phases=phases,
    )


def _replace_postgresql(engine: Engine, entries: Iterable[Entry], phases: dict) -> None:
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection  # psycopg 3: COPY needs the driver itself
        conn.autocommit = True
        locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (_IMPORT_LOCK,)).fetchone()[0]
        if not locked:
            raise ImportRunning("another directory import is running")
        try:
            _load_postgresql(engine, conn, entries, phases)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_IMPORT_LOCK,))
    finally:
        raw.driver_connection.autocommit = False
        raw.close()


def _index_entries(engine: Engine) -> float:
    """The entries' own indexes and statistics, on a second connection while the first
    builds the words tables from the same rows: each build uses one core, and there are
    two. Locks that let the words be read meanwhile: CREATE INDEX, not ADD PRIMARY KEY
    (the swap's connection makes the unique index the key). Returns the seconds taken."""
    started = time.monotonic()
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        conn.autocommit = True
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute(
            "CREATE INDEX ix_directory_entries_words_new ON directory_entries_new"
            f" USING gin ({DIRECTORY_WORDS_TSVECTOR})"
        )
        conn.execute("CREATE UNIQUE INDEX pk_directory_entries_new ON directory_entries_new (id)")
        conn.execute(
            "CREATE INDEX ix_directory_entries_address_new ON directory_entries_new (address)"
        )
        conn.execute("VACUUM (ANALYZE) directory_entries_new")
    finally:
        raw.driver_connection.autocommit = False
        raw.close()
    return round(time.monotonic() - started, 2)


def _load_postgresql(engine: Engine, conn, entries: Iterable[Entry], phases: dict) -> None:
    mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = round(now - mark, 2)
        mark = now

    conn.execute("SET maintenance_work_mem = '256MB'")
    conn.execute("SET work_mem = '256MB'")  # the words' counts: one hash aggregate in memory
    conn.execute("SET synchronous_commit = off")  # the swap alone must be durable
    conn.execute(
        "DROP TABLE IF EXISTS directory_entries_new, directory_terms_new, directory_words_new;"
        "CREATE TABLE directory_entries_new (LIKE directory_entries INCLUDING DEFAULTS);"
        "CREATE TABLE directory_terms_new (LIKE directory_terms INCLUDING DEFAULTS);"
        "CREATE TABLE directory_words_new (LIKE directory_words INCLUDING DEFAULTS);"
    )
    columns = ", ".join(ENTRY_COLUMNS)
    with conn.cursor() as cursor, ThreadPoolExecutor(1) as alongside:
        with cursor.copy(f"COPY directory_entries_new ({columns}) FROM STDIN") as copy:
            for row in _rows(entries):
                copy.write_row(row)
        lap("parse_and_copy")
        entries_indexed = alongside.submit(_index_entries, engine)
        cursor.execute(
            "INSERT INTO directory_terms_new (term, entry_id, domain)"
            " SELECT w, e.id, e.domain FROM directory_entries_new e,"
            " unnest(string_to_array(ltrim(e.words), ' ')) AS w WHERE w <> ''"
        )
        cursor.execute(
            "INSERT INTO directory_words_new (term, entries)"
            " SELECT term, count(*) FROM directory_terms_new GROUP BY term"
        )
        lap("words")
        cursor.execute(
            "ALTER TABLE directory_terms_new"
            " ADD CONSTRAINT pk_directory_terms_new PRIMARY KEY (term, entry_id);"
            "CREATE INDEX ix_directory_terms_domain_term_new"
            " ON directory_terms_new (domain, term);"
            "ALTER TABLE directory_words_new"
            " ADD CONSTRAINT pk_directory_words_new PRIMARY KEY (term);"
        )
        lap("indexes")
        # VACUUM, not only ANALYZE: it sets the visibility map, without which an index-only
        # scan of the words still reads every heap page it names. One statement each.
        for table in ("directory_terms_new", "directory_words_new"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        lap("vacuum")
        phases["entries_indexes_alongside"] = entries_indexed.result()
        lap("waiting_for_entries_indexes")
        cursor.execute(
            "ALTER TABLE directory_entries_new ADD CONSTRAINT pk_directory_entries_new"
            " PRIMARY KEY USING INDEX pk_directory_entries_new"
        )
    conn.execute("SET synchronous_commit = on")
    with conn.transaction():
        # Constraint renames rename their index too: the names the migrations created.
        conn.execute(
            "DROP TABLE directory_words; DROP TABLE directory_terms; DROP TABLE directory_entries;"
            "ALTER TABLE directory_entries_new RENAME TO directory_entries;"
            "ALTER TABLE directory_terms_new RENAME TO directory_terms;"
            "ALTER TABLE directory_words_new RENAME TO directory_words;"
            "ALTER TABLE directory_entries"
            " RENAME CONSTRAINT pk_directory_entries_new TO pk_directory_entries;"
            "ALTER INDEX ix_directory_entries_address_new"
            " RENAME TO ix_directory_entries_address;"
            "ALTER TABLE directory_terms"
            " RENAME CONSTRAINT pk_directory_terms_new TO pk_directory_terms;"
            "ALTER INDEX ix_directory_terms_domain_term_new"
            " RENAME TO ix_directory_terms_domain_term;"
            "ALTER TABLE directory_words"
            " RENAME CONSTRAINT pk_directory_words_new TO pk_directory_words;"
            "ALTER INDEX ix_directory_entries_words_new RENAME TO ix_directory_entries_words;"
        )
    lap("swap")


def _replace_sqlite(engine: Engine, entries: Iterable[Entry]) -> None:
    columns = ", ".join(ENTRY_COLUMNS)
    marks = ", ".join(f":{c}" for c in ENTRY_COLUMNS)
    with engine.begin() as conn:
        for table in ("directory_entries", "directory_terms"):
            conn.execute(text(f"DROP TABLE IF EXISTS {table}_new"))
            conn.execute(text(f"CREATE TABLE {table}_new AS SELECT * FROM {table} WHERE 0"))  # noqa: S608
    batch: list[dict] = []
    insert_entries = text(f"INSERT INTO directory_entries_new ({columns}) VALUES ({marks})")  # noqa: S608
    insert_terms = text(
        "INSERT OR IGNORE INTO directory_terms_new (term, entry_id, domain) VALUES (:t, :e, :d)"
    )

    def flush() -> None:
        with engine.begin() as conn:
            conn.execute(insert_entries, batch)
            terms = [
                {"t": w, "e": row["id"], "d": row["domain"]}
                for row in batch
                for w in row["words"].split()
            ]
            if terms:
                conn.execute(insert_terms, terms)
        batch.clear()

    for row in _rows(entries):
        batch.append(dict(zip(ENTRY_COLUMNS, row, strict=True)))
        if len(batch) >= _BATCH:
            flush()
    if batch:
        flush()
    copy_entries = (
        f"INSERT INTO directory_entries ({columns}) SELECT {columns} FROM directory_entries_new"  # noqa: S608
    )
    copy_terms = "INSERT INTO directory_terms (term, entry_id, domain) SELECT term, entry_id, domain FROM directory_terms_new"  # noqa: E501
    count_words = (
        "INSERT INTO directory_words (term, entries)"
        " SELECT term, count(*) FROM directory_terms GROUP BY term"
    )
    with engine.begin() as conn:  # one write transaction: readers see all or nothing of it
        conn.execute(text("DELETE FROM directory_words"))
        conn.execute(text("DELETE FROM directory_terms"))
        conn.execute(text("DELETE FROM directory_entries"))
        conn.execute(text(copy_entries))
        conn.execute(text(copy_terms))
        conn.execute(text(count_words))
        conn.execute(text("DROP TABLE directory_entries_new"))
        conn.execute(text("DROP TABLE directory_terms_new"))
