"""Searching a folder's envelopes in the cache: flags and dates in SQL, words after decryption.

Subjects and addresses are sealed at rest (`backend.storage.encryption`), so no index can
see them: words are matched on the decrypted envelopes of one folder, walked in the
listing's keyset order (newest first) a batch at a time. A request decrypts at most
`SCAN_BUDGET` envelopes: a page that found fewer matches within it ends early with a
`next` key, and the app asks again, so a rare word in a large folder costs several short
requests, never one long one.

Words match whatever their case and accents ("kaliemie" finds "Kaliémie"), as a clinician
types on a phone. Text in the bodies is the server's job (`backend.reading.full_text`): its
hits arrive here as `uids` and are paged the same way.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select
from sqlalchemy.orm import Session

from backend.mailboxes.listings import display_subject, in_folder, keyset_page, newest_first
from backend.storage.models import Mailbox, Message

SCAN_BUDGET = 2000  # envelopes decrypted per request, at most
_BATCH = 200


@dataclass(frozen=True)
class Criteria:
    """What the app asked for; None means "any"."""

    words: str | None = None  # in the subject, the sender or the recipients
    sender: str | None = None  # in the sender's name or address
    since: datetime | None = None
    unread: bool | None = None
    flagged: bool | None = None
    has_attachments: bool | None = None
    urgent: bool | None = None
    uids: frozenset[int] | None = None  # the server's full-text hits in this folder

    @property
    def needs_decryption(self) -> bool:
        return bool(self.words or self.sender)


def fold(text: str) -> str:
    """Case and accents away: the form both the query and the envelope are compared in."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def search_page(
    *,
    db: Session,
    mailbox: Mailbox,
    folder_name: str,
    criteria: Criteria,
    limit: int,
    after: tuple[datetime, int] | None,
) -> tuple[list[Message], tuple[datetime, int] | None]:
    """One page of matches newest first, and the key to continue from (None at the end)."""
    query = _filtered(mailbox, folder_name, criteria)
    if not criteria.needs_decryption:
        return keyset_page(db, query, limit, after)

    wanted = [fold(w) for w in (criteria.words or "").split()]
    sender = fold(criteria.sender) if criteria.sender else None
    found: list[Message] = []
    key = after
    scanned = 0
    while scanned < SCAN_BUDGET:
        batch = list(db.scalars(newest_first(query, key).limit(min(_BATCH, SCAN_BUDGET - scanned))))
        for message in batch:
            scanned += 1
            key = (message.sort_key, message.id)
            if _matches(message, wanted, sender):
                found.append(message)
                if len(found) > limit:
                    last = found[limit - 1]
                    return found[:limit], (last.sort_key, last.id)
        if not batch or (len(batch) < _BATCH and scanned < SCAN_BUDGET):
            return found, None  # the folder's end
    # Budget spent: what was found so far, and where the next request takes over.
    return found, key


def _filtered(mailbox: Mailbox, folder_name: str, criteria: Criteria) -> Select[tuple[Message]]:
    query = in_folder(mailbox, folder_name)
    if criteria.since is not None:
        query = query.where(Message.sort_key >= criteria.since)
    for column, value in (
        (Message.seen, None if criteria.unread is None else not criteria.unread),
        (Message.flagged, criteria.flagged),
        (Message.has_attachments, criteria.has_attachments),
        (Message.urgent, criteria.urgent),
    ):
        if value is not None:  # `= value`, not `IS value`: only the former uses an index
            query = query.where(column == value)
    if criteria.uids is not None:
        query = query.where(Message.uid.in_(sorted(criteria.uids)))
    return query


def _matches(message: Message, words: list[str], sender: str | None) -> bool:
    if sender is not None and sender not in fold(_address_text([message.sender])):
        return False
    if not words:
        return True
    recipients = message.recipients or {}
    haystack = fold(
        " ".join(
            (
                display_subject(message.subject) or "",
                _address_text([message.sender]),
                _address_text(recipients.get("to", [])),
                _address_text(recipients.get("cc", [])),
            )
        )
    )
    return all(word in haystack for word in words)


def _address_text(addresses: Iterable[dict[str, str | None] | None]) -> str:
    return " ".join(
        f"{a.get('name') or ''} {a.get('address') or ''}" for a in addresses if a is not None
    )
