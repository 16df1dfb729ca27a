"""Recipient search as the user types: word prefixes, accents ignored, several words ANDed.

Every word typed must start one of the entry's words (names, profession, specialty,
organisation, service, street, city, postcode, the address's local part and domain).
Ranking, in three tiers: the user's recent correspondents, then the establishment's own
addresses (its mailboxes in Estafette, then directory entries in its domains), then
everyone else; within a tier, by the matched word. Each tier is one index
range scan of `directory_terms` driven by the longest word, the other words filtering
the entry's `words`, so a one-letter prefix costs no more than a full name.

That scan stops once it has its answer, which is soon when the other words are common
("jean dup": a quarter of the entries have a word starting "jean"). When they are rare
together ("thomas henry": 21,000 Thomas, 8,000 Henry, 200 of both) it reads thousands of
entries to find a few. So on PostgreSQL a search of several words first reads
`directory_words`: the words each typed prefix stands for and their counts. From them
`_plan` estimates, in microseconds, three ways to the same answer and takes the cheapest:
- `scan`: the driving word's range, each entry read from the heap and filtered;
- `probe`: the same range read from `directory_terms`' key alone, each entry probed in
  that key for the other words (when each stands for a few words): an index-only scan;
- `index`: the entries found by intersecting the narrow words in the GIN index of the
  entries' words, then ordered the same way (by the driving word, then id): from the
  rare side.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    String,
    any_,
    bindparam,
    func,
    literal,
    literal_column,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from backend.directory.words import address_words, query_words, words_of
from backend.storage.models import (
    DIRECTORY_WORDS_TSVECTOR,
    DirectoryEntry,
    DirectoryTerm,
    Mailbox,
    Membership,
    Message,
    User,
)

MAX_LIMIT = 50
RECENT_MESSAGES = 200
CORRESPONDENTS_TTL = 120.0
OWN_MAILBOXES_TTL = 60.0  # seconds; a new correspondent ranks first within two minutes
# A typed prefix standing for more distinct words than this ("d") is not looked up in the
# GIN index (an OR of thousands of words): it filters the entries found by the others.
NARROW_WORDS = 16
# What each step of a plan costs, in microseconds: fitted to the times of 420 full names
# on 600,000 entries (bench/directory.py's), each plan forced in turn. PostgreSQL 15 with
# 128 MB of shared buffers: many pages come from the OS cache, and names both first and
# last ("Thomas", "Nicolas") are less often together than independence predicts, so a
# probe costs more than its descent.
SCAN_ENTRY_US = 10.0  # an entry of the driving word's range: its heap row, the LIKE filters
PROBE_ENTRY_US = 0.3  # the same entry read from directory_terms' key alone
PROBE_WORD_US = 4.0  # ...and one descent of that key for one word of the other typed words
INDEX_POSTING_US = 0.05  # one entry id of a narrow word's list in the GIN index
INDEX_ENTRY_US = 2.0  # one entry the GIN index finds: its heap page, the recheck
UNNEST_US = 8.0  # ...and splitting its words, when the driving prefix stands for several


@dataclass(frozen=True)
class Hit:
    address: str
    kind: str
    name: str | None
    profession: str | None = None
    specialty: str | None = None
    organisation: str | None = None
    service: str | None = None
    street: str | None = None
    postcode: str | None = None
    city: str | None = None
    national_id: str | None = None
    rank: str = "directory"  # correspondent | establishment | directory
    in_directory: bool = True


def _upper_bound(prefix: str) -> str:
    """The least string greater than every string starting with `prefix` ([a-z0-9] words)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


_ENTRY = DirectoryEntry.__table__
_TERM = DirectoryTerm.__table__
# What a hit shows: the searchable words (the longest column) never leave the database.
_SHOWN = tuple(c for c in _ENTRY.c if c.name not in ("words", "domain", "civility"))
_TIER = {"correspondent": 0, "establishment": 1, "directory": 2}
_RANK = {number: name for name, number in _TIER.items()}


def _matching(statement: Select, count: int, name: str = "other") -> Select:
    """Each of `count` typed words starts one of the entry's words (`:other0`...)."""
    for number in range(count):
        statement = statement.where(_ENTRY.c.words.like(bindparam(f"{name}{number}")))
    return statement


def _tier(domain: int | None) -> Any:
    """The tier of a `directory_terms` scan: one of the establishment's domains, or all."""
    return literal(_TIER["directory" if domain is None else "establishment"]).label("tier")


def _in_key_order(statement: Select, domain: int | None) -> Select:
    """A `directory_terms` scan in its index's order, bounded by its tier's limit: the
    primary key (term, entry_id), or with a domain (`:domain<n>`) the (domain, term) index,
    so the first rows found are the answer (no sort of all hits)."""
    if domain is None:
        statement = statement.order_by(_TERM.c.term, _TERM.c.entry_id)
        return statement.limit(bindparam("wide_limit", type_=Integer))
    statement = statement.where(_TERM.c.domain == bindparam(f"domain{domain}"))
    return statement.order_by(_TERM.c.term).limit(bindparam("limit", type_=Integer))


def _term_scan(others: int, domain: int | None) -> Select:
    """One ordered range scan of the driving word's terms, the others filtering."""
    statement = (
        select(*_SHOWN, _tier(domain), _TERM.c.term.label("matched"))
        .join_from(_TERM, _ENTRY, _ENTRY.c.id == _TERM.c.entry_id)
        .where(_TERM.c.term >= bindparam("low"), _TERM.c.term < bindparam("high"))
    )
    return _matching(_in_key_order(statement, domain), others)


def _correspondents_tier(words: int, *columns: Any) -> Select:
    """The user's recent correspondents that match: every word, the first one included,
    filters them; `columns` are what the caller's statement carries of each entry."""
    scan = select(
        *columns,
        literal(_TIER["correspondent"]).label("tier"),
        _ENTRY.c.address.label("matched"),
    ).where(_ENTRY.c.address.in_(bindparam("recent", expanding=True)))
    return (
        _matching(scan, words, "word")
        .order_by(_ENTRY.c.address)
        .limit(bindparam("limit", type_=Integer))
    )


@functools.lru_cache(maxsize=64)
def _search_statement(words: int, domains: int, recent: bool) -> Select:
    """The whole search for one shape of query, built once: the tiers' scans, each bounded
    by its own LIMIT, in one UNION ALL (one round trip a keystroke). Values are bound."""
    parts = [_correspondents_tier(words, *_SHOWN)] if recent else []
    parts += [_term_scan(words - 1, number) for number in range(domains)]
    parts.append(_term_scan(words - 1, None))
    tiers = union_all(*(select(*part.subquery().c) for part in parts)).subquery()
    return select(tiers).order_by(tiers.c.tier, tiers.c.matched, tiers.c.id)


@dataclass(frozen=True)
class _Typed:
    """One typed word as the directory knows it."""

    terms: tuple[str, ...] | None  # the words it is a prefix of; None: more than NARROW_WORDS
    entries: int  # the entries having one of them (a lower bound when `terms` is None)


@functools.lru_cache(maxsize=8)
def _words_statement(words: int) -> TextClause:
    """Each typed word's first NARROW_WORDS + 1 words in `directory_words`, and the number
    of entries (ids are an import's line numbers): one round trip, index range scans."""
    parts = [
        f"(SELECT {n} AS word, term, entries FROM directory_words"  # noqa: S608 (n: an int)
        f" WHERE term >= :low{n} AND term < :high{n} ORDER BY term LIMIT {NARROW_WORDS + 1})"
        for n in range(words)
    ]
    parts.append("(SELECT -1, NULL, max(id) FROM directory_entries)")
    return text(" UNION ALL ".join(parts))


def _typed(db: Session, words: list[str]) -> tuple[int, list[_Typed]]:
    """The number of entries, and what each typed word stands for."""
    params = {f"low{n}": w for n, w in enumerate(words)}
    params |= {f"high{n}": _upper_bound(w) for n, w in enumerate(words)}
    found: list[list[tuple[str, int]]] = [[] for _ in words]
    total = 0
    for word, term, entries in db.execute(_words_statement(len(words)), params):
        if word < 0:
            total = entries or 0
        else:
            found[word].append((term, entries))
    typed = [
        _Typed(
            terms=tuple(t for t, _ in rows) if len(rows) <= NARROW_WORDS else None,
            entries=sum(e for _, e in rows),
        )
        for rows in found
    ]
    return total, typed


def _plan(total: int, typed: list[_Typed], wide_limit: int) -> str:
    """`scan`, `probe` or `index`: the cheapest way to the answer (module docstring), the
    entries each reads estimated as if the typed words were independent."""
    if total <= 0 or len(typed) < 2:
        return "scan"
    matching = total * math.prod(t.entries / total for t in typed)

    def read(driver: _Typed) -> float:
        """The driver's entries read before `wide_limit` of them have the other words."""
        return min(driver.entries, wide_limit * driver.entries / max(matching, 1.0))

    costs = {"scan": read(typed[0]) * SCAN_ENTRY_US}
    if _can_probe(typed):
        probed = _probe_driver(typed)
        words = sum(len(t.terms or ()) for n, t in enumerate(typed) if n != probed)
        costs["probe"] = read(typed[probed]) * (PROBE_ENTRY_US + PROBE_WORD_US * words)
    if _can_use_index(typed):
        narrow = [t for t in typed if t.terms is not None]
        split = 0.0 if _one_driving_word(typed) else UNNEST_US
        costs["index"] = INDEX_POSTING_US * sum(t.entries for t in narrow) + matching * (
            INDEX_ENTRY_US + split
        )
    return min(costs, key=costs.__getitem__)


def _probe_driver(typed: list[_Typed]) -> int:
    """Which typed word's entries the `probe` plan reads, the others probed. When the
    driving prefix stands for one word, its hits are in id order, as are any other single
    word's: the rarest of those reads the fewest entries for the same answer."""
    if not _one_driving_word(typed):
        return 0
    single = [n for n, t in enumerate(typed) if t.terms is not None and len(t.terms) == 1]
    return min(single, key=lambda n: typed[n].entries)


def _can_probe(typed: list[_Typed]) -> bool:
    """Every word but the one read stands for a few words, each probed in the key."""
    probed = _probe_driver(typed)
    return all(t.terms is not None for n, t in enumerate(typed) if n != probed)


def _can_use_index(typed: list[_Typed]) -> bool:
    return any(t.terms is not None for t in typed)


def _one_driving_word(typed: list[_Typed]) -> bool:
    return typed[0].terms is not None and len(typed[0].terms) == 1


def _tsquery(typed: list[_Typed]) -> str:
    """Every narrow word, as an OR of the exact words it stands for ([a-z0-9], no quoting
    needed): the index's lists are intersected, the rarest skipping through the others."""
    return " & ".join(
        "(" + " | ".join(f"'{term}'" for term in t.terms) + ")"
        for t in typed
        if t.terms is not None
    )


def _joined_back(parts: list[Select]) -> Select:
    """The tiers' narrow rows (id, tier, matched word), each bounded by its own LIMIT,
    joined to the entries for what a hit shows: the final rows only."""
    tiers = union_all(*(select(*part.subquery().c) for part in parts)).subquery()
    return (
        select(*_SHOWN, tiers.c.tier, tiers.c.matched)
        .join_from(tiers, _ENTRY, _ENTRY.c.id == tiers.c.id)
        .order_by(tiers.c.tier, tiers.c.matched, _ENTRY.c.id)
    )


def _has_one_of(number: int) -> Any:
    """The driving scan's entry has one of the words `:terms<number>`: a descent of
    directory_terms' key for each. A subquery evaluated per row, which PostgreSQL does not
    turn into a join (as it would an EXISTS): the ordered scan stays one and stops at its
    LIMIT."""
    probe = _TERM.alias(f"probe{number}")
    words = bindparam(f"terms{number}", type_=ARRAY(String))
    return (
        select(literal(1))
        .where(probe.c.term == any_(words), probe.c.entry_id == _TERM.c.entry_id)
        .limit(1)
        .scalar_subquery()
        .is_not(None)
    )


@functools.lru_cache(maxsize=64)
def _probe_statement(
    probes: int, domains: int, recent: bool, words: int, one_driving_word: bool
) -> Select:
    """The search for the `probe` plan: one typed word's entries read from directory_terms'
    keys alone ((term, entry_id); a domain's (domain, term)), each probed for the `probes`
    others (`:terms0`...), then the same tiers and order as the scan.

    `one_driving_word`: the driving prefix stands for one word (`:driving_word`), so the
    word read is any single word (`:read_word`; `_probe_driver`), in id order. Otherwise
    the driving prefix's range is read, in (word, id) order."""
    parts = [_correspondents_tier(words, _ENTRY.c.id)] if recent else []
    if one_driving_word:
        matched = bindparam("driving_word", type_=_TERM.c.term.type)
        read = _TERM.c.term == bindparam("read_word")
    else:
        matched = _TERM.c.term
        read = (_TERM.c.term >= bindparam("low")) & (_TERM.c.term < bindparam("high"))
    for number in [*range(domains), None]:
        statement = select(
            _TERM.c.entry_id.label("id"), _tier(number), matched.label("matched")
        ).where(read)
        statement = _in_key_order(statement, number)
        for other in range(probes):
            statement = statement.where(_has_one_of(other))
        parts.append(statement)
    return _joined_back(parts)


@functools.lru_cache(maxsize=64)
def _rare_side_statement(
    wide: int, domains: int, recent: bool, words: int, one_driving_word: bool
) -> Select:
    """The search for the `index` plan: the entries having every narrow word (the GIN
    index; `:tsquery`), the `wide` others filtering them (`:wide0`...), one row per word
    starting with the driving prefix as in the scan, then the same tiers and order.

    `one_driving_word`: the driving prefix starts one word of the whole directory
    (`:driving_word`, in the tsquery), so each entry found has it once and nothing else
    in its range: one row each, without unnesting the entry's words."""
    parts = [_correspondents_tier(words, _ENTRY.c.id)] if recent else []
    # The entries found keep only what orders them (id, domain, matched word): a narrow
    # intermediate result, sorted and limited, joined back to the entries for the final
    # rows only (a full name can find over a thousand entries to rank for ten hits).
    in_index = text(f"{DIRECTORY_WORDS_TSVECTOR} @@ CAST(:tsquery AS tsquery)")
    if one_driving_word:
        driving = bindparam("driving_word", type_=_TERM.c.term.type)
        found = select(_ENTRY.c.id, _ENTRY.c.domain, driving.label("matched")).where(in_index)
    else:
        entry_words = func.string_to_array(func.ltrim(_ENTRY.c.words), literal_column("' '"))
        matched = func.unnest(entry_words).table_valued("term").render_derived(name="matched_word")
        found = (
            select(_ENTRY.c.id, _ENTRY.c.domain, matched.c.term.label("matched"))
            .select_from(_ENTRY)
            .join(matched, true())
            .where(in_index)
            .where(matched.c.term >= bindparam("low"), matched.c.term < bindparam("high"))
        )
    found = _matching(found, wide, "wide").cte("found").prefix_with("MATERIALIZED")
    for number in range(domains):
        parts.append(
            select(found.c.id, literal(_TIER["establishment"]).label("tier"), found.c.matched)
            .where(found.c.domain == bindparam(f"domain{number}"))
            .order_by(found.c.matched, found.c.id)
            .limit(bindparam("limit", type_=Integer))
        )
    parts.append(
        select(found.c.id, literal(_TIER["directory"]).label("tier"), found.c.matched)
        .order_by(found.c.matched, found.c.id)
        .limit(bindparam("wide_limit", type_=Integer))
    )
    return _joined_back(parts)


def _hit(row: Any, rank: str | None = None) -> Hit:
    """A hit from a directory row: its rank from the row's tier, unless given."""
    name = " ".join(p for p in (row.first_name, row.last_name) if p) or None
    return Hit(
        address=row.address,
        kind=row.kind,
        name=name or row.organisation,
        profession=row.profession,
        specialty=row.specialty,
        organisation=row.organisation,
        service=row.service,
        street=row.street,
        postcode=row.postcode,
        city=row.city,
        national_id=row.national_id,
        rank=rank or _RANK[row.tier],
    )


class _Correspondents:
    """Each user's recent correspondents, from the cached envelopes, kept a short while.

    Senders and recipients are sealed at rest, so they are read through the models (and
    stay in this process's memory only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int], tuple[float, frozenset[str]]] = {}

    def of(self, db: Session, user: User) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get((_database(db), user.id))
        if cached is not None and now - cached[0] < CORRESPONDENTS_TTL:
            return cached[1]
        mailbox_ids = select(Membership.mailbox_id).where(Membership.user_id == user.id)
        messages = db.scalars(
            select(Message)
            .where(Message.mailbox_id.in_(mailbox_ids))
            .order_by(Message.sort_key.desc())
            .limit(RECENT_MESSAGES)
        ).all()
        own = {m.lower() for m in db.scalars(select(Mailbox.address))}
        found: set[str] = set()
        for message in messages:
            people = [message.sender or {}]
            recipients = message.recipients or {}
            people += [*recipients.get("to", ()), *recipients.get("cc", ())]
            for person in people:
                address = (person or {}).get("address")
                if address and address.lower() not in own:
                    found.add(address.lower())
        result = frozenset(found)
        with self._lock:
            self._cache[(_database(db), user.id)] = (now, result)
        return result

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()


correspondents = _Correspondents()


OwnRow = tuple[str, str, str | None, tuple[str, ...]]


def _database(db: Session) -> str:
    """Which database a cached value belongs to (a test process opens many)."""
    return str(db.get_bind().url)


class _OwnMailboxes:
    """The establishment's mailboxes in Estafette and their words, re-read each minute
    (a mailbox an admin adds is searchable within a minute)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, tuple[OwnRow, ...]]] = {}

    def rows(self, db: Session) -> tuple[OwnRow, ...]:
        now, key = time.monotonic(), _database(db)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now - cached[0] < OWN_MAILBOXES_TTL:
            return cached[1]
        query = select(Mailbox.address, Mailbox.kind, Mailbox.display_name)
        rows = tuple(
            (address, kind, name, (*words_of([name]), *address_words(address)))
            for address, kind, name in db.execute(query.order_by(Mailbox.address))
        )
        with self._lock:
            self._cache[key] = (now, rows)
        return rows

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()


own_mailboxes = _OwnMailboxes()


_NOTHING = select(literal(None))  # a word no entry has: only the establishment's own


def _planned(
    db: Session, words: list[str], params: dict[str, Any], domains: int, recent: bool
) -> Select | None:
    """The statement of the cheapest plan other than the scan (None: the scan), after the
    words' counts; binds what it needs into `params`."""
    total, typed = _typed(db, words)
    if any(t.terms == () for t in typed):
        return _NOTHING
    plan = _plan(total, typed, params["wide_limit"])
    one_word = _one_driving_word(typed)
    if one_word and plan != "scan":
        params["driving_word"] = typed[0].terms[0]
    if plan == "probe":
        read = _probe_driver(typed)
        probed = [list(t.terms or ()) for n, t in enumerate(typed) if n != read]
        params |= {f"terms{n}": terms for n, terms in enumerate(probed)}
        if one_word:
            params["read_word"] = typed[read].terms[0]
        return _probe_statement(len(probed), domains, recent, len(words), one_word)
    if plan == "index":
        wide = [w for w, t in zip(words, typed, strict=True) if t.terms is None]
        params["tsquery"] = _tsquery(typed)
        params |= {f"wide{n}": f"% {word}%" for n, word in enumerate(wide)}
        return _rare_side_statement(len(wide), domains, recent, len(words), one_word)
    return None


def search(*, db: Session, user: User, query: str, limit: int) -> list[Hit]:
    """Up to `limit` mailboxes matching every word of `query`, best ranked first.

    One round trip: the tiers' scans, each bounded by its own LIMIT, in one UNION ALL
    (PostgreSQL, several words: one more, before it, for the words' counts)."""
    limit = max(1, min(limit, MAX_LIMIT))
    if "@" in query:
        return _by_address(db, query, limit)
    words = query_words(query)
    if not words:
        return []
    recent = correspondents.of(db, user)
    own: list[Hit] = []
    domains: set[str] = set()
    for address, kind, name, own_words in own_mailboxes.rows(db):
        domains.add(address.rpartition("@")[2].lower())
        if all(any(w.startswith(word) for w in own_words) for word in words):
            own.append(Hit(address, kind, name, rank="establishment"))
    driver, others = words[0], words[1:]
    # Scans take the driving word's range and filter on the others; correspondents on all.
    params: dict[str, Any] = {
        **{f"other{n}": f"% {word}%" for n, word in enumerate(others)},
        **{f"word{n}": f"% {word}%" for n, word in enumerate(words)},
        "low": driver,
        "high": _upper_bound(driver),
        "limit": limit + 5,  # a few more: an entry may match the driving word twice
        "wide_limit": 2 * limit + 5,
        **{f"domain{n}": domain for n, domain in enumerate(sorted(domains))},
    }
    if recent:
        params["recent"] = sorted(recent)
    statement = _search_statement(len(words), len(domains), bool(recent))
    if len(words) > 1 and db.get_bind().dialect.name == "postgresql":
        planned = _planned(db, words, params, len(domains), bool(recent))
        statement = statement if planned is None else planned
    rows = db.execute(statement, params).all() if statement is not _NOTHING else []
    first = [row for row in rows if row.tier == _TIER["correspondent"]]
    rest = [row for row in rows if row.tier != _TIER["correspondent"]]
    results: dict[str, Hit] = {}
    for found in (*first, *own, *rest):  # the first of an address is its best rank
        if found.address not in results:
            results[found.address] = found if isinstance(found, Hit) else _hit(found)
            if len(results) == limit:
                break
    return list(results.values())


def _by_address(db: Session, query: str, limit: int) -> list[Hit]:
    """A typed address: a prefix of the address itself (the address index)."""
    prefix = "".join(query.split()).lower()
    if not prefix or not prefix.isascii():
        return []
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    entries = db.scalars(
        select(DirectoryEntry)
        .where(DirectoryEntry.address >= prefix, DirectoryEntry.address < upper)
        .order_by(DirectoryEntry.address)
        .limit(limit)
    )
    hits = [_hit(e, "directory") for e in entries]  # an ORM entry has the same attributes
    own = [
        Hit(address=a, kind=k, name=n, rank="establishment")
        for a, k, n in db.execute(
            select(Mailbox.address, Mailbox.kind, Mailbox.display_name)
            .where(Mailbox.address >= prefix, Mailbox.address < upper)
            .limit(limit)
        )
    ]
    merged = {h.address: h for h in [*own, *hits]}
    return list(merged.values())[:limit]


def unknown_addresses(*, db: Session, addresses: Iterable[str]) -> list[str]:
    """The addresses neither in the directory nor among the establishment's mailboxes.

    An empty directory (never imported) knows nobody and judges nobody: returns []."""
    wanted = list(dict.fromkeys(a.lower() for a in addresses))
    if not wanted or db.scalar(select(DirectoryEntry.id).limit(1)) is None:
        return []
    known = set(
        db.scalars(select(DirectoryEntry.address).where(DirectoryEntry.address.in_(wanted)))
    )
    known |= set(db.scalars(select(Mailbox.address).where(Mailbox.address.in_(wanted))))
    return [a for a in wanted if a not in known]
