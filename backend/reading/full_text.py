"""Full-text search, bodies included, asked of the operator's server (IMAP SEARCH TEXT).

The gateway keeps no bodies, so only the server can search them (RFC 3501 §6.4.4). Where
it offers `SEARCH=FUZZY` (RFC 6203; Dovecot with a full-text index), the search is fuzzy,
as the desktop client's would be; with ESEARCH (RFC 4731) the UIDs come as ranges. The
answer is a set of UIDs in the folder; the cache pages them like any listing
(`backend.mailboxes.search`). At most `MAX_HITS`, the newest (highest UIDs): a word found
in ten thousand messages is not a search a phone can use.
"""

from __future__ import annotations

from backend import errors
from backend.config import Settings
from backend.mail.imap import ProtocolError, search_uids
from backend.mail.sessions import open_folder
from backend.storage.models import Folder, Mailbox

MAX_HITS = 10_000


def server_search(
    mailbox: Mailbox, folder: Folder, text: str, settings: Settings
) -> frozenset[int]:
    """The UIDs whose text (headers and bodies) holds `text`, as the server finds them."""
    with open_folder(mailbox, folder, settings=settings, readonly=True) as client:
        criteria: list[str] = ["TEXT", text]
        if b"SEARCH=FUZZY" in client.capabilities():
            criteria.insert(0, "FUZZY")
        try:
            uids = search_uids(client, criteria, charset="UTF-8")
        except ProtocolError as exc:
            if "BADCHARSET" not in str(exc).upper() or not text.isascii():
                raise errors.SearchUnsupported(
                    "The mailbox server refused this search", reason="server_refused"
                ) from exc
            uids = search_uids(client, criteria)  # an older server: US-ASCII is all it takes
    return frozenset(sorted(uids)[-MAX_HITS:])
