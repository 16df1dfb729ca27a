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

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Select, select
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
CORRESPONDENTS_TTL = 120.0  # seconds; a new correspondent ranks first within two minutes


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


def _matching(statement: Select, words: list[str]) -> Select:
    for word in words:
        statement = statement.where(DirectoryEntry.words.like(f"% {word}%"))
    return statement


def _term_scan(words: list[str], domain: str | None, limit: int) -> Select:
    """One ordered range scan: of the primary key (term, entry_id), or with `domain` of
    (domain, term), so the first `limit` rows found are the answer (no sort of all hits)."""
    driver, others = words[0], words[1:]
    statement = (
        select(DirectoryEntry, DirectoryTerm.term)
        .join(DirectoryEntry, DirectoryEntry.id == DirectoryTerm.entry_id)
        .where(DirectoryTerm.term >= driver, DirectoryTerm.term < _upper_bound(driver))
        .limit(limit)
    )
    if domain is None:
        statement = statement.order_by(DirectoryTerm.term, DirectoryTerm.entry_id)
    else:
        statement = statement.where(DirectoryTerm.domain == domain).order_by(DirectoryTerm.term)
    return _matching(statement, others)


def _hit(entry: DirectoryEntry, rank: str) -> Hit:
    name = " ".join(p for p in (entry.first_name, entry.last_name) if p) or None
    return Hit(
        address=entry.address,
        kind=entry.kind,
        name=name or entry.organisation,
        profession=entry.profession,
        specialty=entry.specialty,
        organisation=entry.organisation,
        service=entry.service,
        street=entry.street,
        postcode=entry.postcode,
        city=entry.city,
        national_id=entry.national_id,
        rank=rank,
    )


class _Correspondents:
    """Each user's recent correspondents, from the cached envelopes, kept a short while.

    Senders and recipients are sealed at rest, so they are read through the models (and
    stay in this process's memory only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[float, frozenset[str]]] = {}

    def of(self, db: Session, user: User) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(user.id)
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
            self._cache[user.id] = (now, result)
        return result

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()


correspondents = _Correspondents()


def _own_mailboxes(db: Session, words: list[str]) -> tuple[list[Hit], set[str]]:
    """The establishment's mailboxes in Estafette (all four kinds) matching every word,
    and the establishment's domains."""
    hits, domains = [], set()
    for address, kind, display_name in db.execute(
        select(Mailbox.address, Mailbox.kind, Mailbox.display_name).order_by(Mailbox.address)
    ):
        domains.add(address.rpartition("@")[2].lower())
        own_words = [*words_of([display_name]), *address_words(address)]
        if all(any(w.startswith(word) for w in own_words) for word in words):
            hits.append(Hit(address=address, kind=kind, name=display_name, rank="establishment"))
    return hits, domains


def search(*, db: Session, user: User, query: str, limit: int) -> list[Hit]:
    """Up to `limit` mailboxes matching every word of `query`, best ranked first."""
    limit = max(1, min(limit, MAX_LIMIT))
    if "@" in query:
        return _by_address(db, query, limit)
    words = query_words(query)
    if not words:
        return []
    results: dict[str, Hit] = {}

    def add(hits: Iterable[Hit]) -> None:
        for hit in hits:
            if len(results) >= limit:
                return
            results.setdefault(hit.address, hit)

    recent = correspondents.of(db, user)
    if recent:
        statement = _matching(
            select(DirectoryEntry).where(DirectoryEntry.address.in_(sorted(recent))), words
        ).limit(limit)
        add(_hit(e, "correspondent") for e in db.scalars(statement))
    own, domains = _own_mailboxes(db, words)
    add(own)
    for domain in sorted(domains):  # an establishment has one domain, or a few
        if len(results) >= limit:
            break
        rows = db.execute(_term_scan(words, domain, limit + 5)).all()
        add(_hit(entry, "establishment") for entry, _term in rows)
    if len(results) < limit:
        # A few more than missing: an entry may match the driving word twice.
        rows = db.execute(_term_scan(words, None, limit + len(results) + 5)).all()
        add(_hit(entry, "directory") for entry, _term in rows)
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
    hits = [_hit(e, "directory") for e in entries]
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
