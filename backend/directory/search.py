"""Recipient search as the user types: word prefixes, accents ignored, several words ANDed.

Every word typed must start one of the entry's words (names, profession, specialty,
organisation, service, street, city, postcode, the address's local part and domain).
Ranking, in three tiers: the user's recent correspondents, then the establishment's own
addresses (its mailboxes in Estafette, then directory entries in its domains), then
everyone else; within a tier, by the matched word. Each tier is one index
range scan of `directory_terms` driven by the longest word, the other words filtering
the entry's `words`, so a one-letter prefix costs no more than a full name.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Select, bindparam, literal, select, union_all
from sqlalchemy.orm import Session

from backend.directory.words import address_words, query_words, words_of
from backend.storage.models import (
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
_TIER = {"correspondent": 0, "establishment": 1, "directory": 2}
_RANK = {number: name for name, number in _TIER.items()}


def _matching(statement: Select, count: int, name: str = "other") -> Select:
    """Each of `count` typed words starts one of the entry's words (`:other0`...)."""
    for number in range(count):
        statement = statement.where(_ENTRY.c.words.like(bindparam(f"{name}{number}")))
    return statement


def _term_scan(others: int, domain: int | None) -> Select:
    """One ordered range scan: of the primary key (term, entry_id), or with a domain of
    (domain, term), so the first rows found are the answer (no sort of all hits)."""
    tier = _TIER["directory" if domain is None else "establishment"]
    statement = (
        select(*_ENTRY.c, literal(tier).label("tier"), _TERM.c.term.label("matched"))
        .join_from(_TERM, _ENTRY, _ENTRY.c.id == _TERM.c.entry_id)
        .where(_TERM.c.term >= bindparam("low"), _TERM.c.term < bindparam("high"))
    )
    if domain is None:
        statement = statement.order_by(_TERM.c.term, _TERM.c.entry_id)
        statement = statement.limit(bindparam("wide_limit", type_=Integer))
    else:
        statement = statement.where(_TERM.c.domain == bindparam(f"domain{domain}"))
        statement = statement.order_by(_TERM.c.term).limit(bindparam("limit", type_=Integer))
    return _matching(statement, others)


@functools.lru_cache(maxsize=64)
def _search_statement(words: int, domains: int, recent: bool) -> Select:
    """The whole search for one shape of query, built once: the tiers' scans, each bounded
    by its own LIMIT, in one UNION ALL (one round trip a keystroke). Values are bound."""
    parts = []
    if recent:
        correspondents_scan = select(
            *_ENTRY.c,
            literal(_TIER["correspondent"]).label("tier"),
            _ENTRY.c.address.label("matched"),
        ).where(_ENTRY.c.address.in_(bindparam("recent", expanding=True)))
        # Every word, the first one included, filters the correspondents.
        parts.append(
            _matching(correspondents_scan, words, "word")
            .order_by(_ENTRY.c.address)
            .limit(bindparam("limit", type_=Integer))
        )
    parts += [_term_scan(words - 1, number) for number in range(domains)]
    parts.append(_term_scan(words - 1, None))
    tiers = union_all(*(select(*part.subquery().c) for part in parts)).subquery()
    return select(tiers).order_by(tiers.c.tier, tiers.c.matched, tiers.c.id)


def _hit(row: Any, rank: str) -> Hit:
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
        rank=rank,
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


def search(*, db: Session, user: User, query: str, limit: int) -> list[Hit]:
    """Up to `limit` mailboxes matching every word of `query`, best ranked first.

    One round trip: the tiers' scans, each bounded by its own LIMIT, in one UNION ALL."""
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
    rows = db.execute(statement, params).all()
    found = [_hit(row, _RANK[row.tier]) for row in rows]
    ranked = [h for h in found if h.rank == "correspondent"] + own
    ranked += [h for h in found if h.rank != "correspondent"]
    results: dict[str, Hit] = {}
    for hit in ranked:
        results.setdefault(hit.address, hit)
    return list(results.values())[:limit]


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
