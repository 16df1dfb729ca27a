"""One session that hears every folder: NOTIFY (RFC 5465) and LIST-STATUS (RFC 5819).

With NOTIFY, the IDLE on INBOX also carries `* STATUS <folder> (…)` when mail arrives in,
leaves, or changes flags in another folder. The worker then lists the folders once
(LIST-STATUS: one command for all of them) and catches up those whose status moved: no
waiting for a poll, and no connection per folder. The same listing, on the admin's period,
finds folders made, renamed or deleted, and is the whole of the watch on a server
without NOTIFY.

MailboxName (§5.4) is not asked for: folders made, renamed or deleted wait for the
listing. On Dovecot 2.3.19, a session with MailboxName in its NOTIFY, once a folder that
some session had open was renamed, was seen to log "Corrupted mailbox list index" and then
send no notice at all, or to die (SIGSEGV) at its next SELECT. Without MailboxName the
same sequences kept every STATUS notice coming. A lost page costs more than a rename
seen one poll later.
"""

from __future__ import annotations

import imaplib
from dataclasses import dataclass

from imapclient import imap_utf7
from imapclient.response_parser import parse_response

from backend.mail.imap import MailSession

imaplib.Commands.setdefault("NOTIFY", ("AUTH", "SELECTED"))

# INBOX stays selected: its news come as EXISTS/EXPUNGE/FETCH. Every other personal folder
# is told by STATUS (MessageNew and MessageExpunge go together, §5.2; FlagChange gives
# HIGHESTMODSEQ and UNSEEN, §5.3).
NOTIFY_EVENTS = (
    "(selected (MessageNew MessageExpunge FlagChange))",
    "(personal (MessageNew MessageExpunge FlagChange))",
)
OVERFLOW = b"[NOTIFICATIONOVERFLOW]"  # §5.8: the server stopped; set NOTIFY again
FOLDER_NOTICES = (b"STATUS", b"LIST")


def watch_every_folder(client: MailSession) -> bool:
    """NOTIFY SET on the session; False when the server does not offer it or refuses."""
    if b"NOTIFY" not in client.capabilities():
        return False
    imap = client._imap
    try:
        tag = imap._command("NOTIFY", "SET", *NOTIFY_EVENTS)
        typ, _data = imap._command_complete("NOTIFY", tag)
    except imaplib.IMAP4.error:  # BAD: a server that advertises more than it parses
        return False
    return typ == "OK"


def folder_news_in_lines(lines: list[bytes]) -> bool:
    """Whether raw IDLE lines tell of another folder (STATUS) or of the folder list (LIST).

    A STATUS of INBOX can only describe a time it was not selected, which its next
    SELECT covers.
    """
    for line in lines:
        words = line.split(None, 3)
        if len(words) < 3 or words[0] != b"*" or words[1].upper() not in FOLDER_NOTICES:
            continue
        if words[1].upper() == b"LIST" or words[2].strip(b'"').upper() != b"INBOX":
            return True
    return False


def folder_news_in_responses(responses: list[tuple]) -> bool:
    """The same, among imapclient's parsed responses (`idle_done`)."""
    for response in responses:
        if not response or not isinstance(response[0], bytes):
            continue
        kind = response[0].upper()
        if kind == b"LIST":
            return True
        if kind == b"STATUS" and len(response) > 1 and _name(response[1]).upper() != "INBOX":
            return True
    return False


def take_folder_notices(client: MailSession) -> bool:
    """Whether STATUS (of a folder other than INBOX) or LIST notices came with the answers
    to our own commands; they are taken out of imaplib's untagged responses."""
    pending = client._imap.untagged_responses
    listed = bool(pending.pop("LIST", None))
    statuses = pending.pop("STATUS", [])
    return listed or any(_status_name(data).upper() != "INBOX" for data in statuses)


@dataclass(frozen=True)
class ListedFolder:
    name: str
    attributes: frozenset[bytes]
    status: dict[bytes, int]


def list_with_status(client: MailSession, items: list[bytes]) -> list[ListedFolder] | None:
    """Every folder with its attributes and STATUS `items`, in one LIST-STATUS command.

    `LIST "" "*" RETURN (SPECIAL-USE STATUS (…))`; None when the server lacks LIST-STATUS.
    Statuses that came earlier (NOTIFY's) are answered again by this one: the last wins.
    """
    if b"LIST-STATUS" not in client.capabilities():
        return None
    imap = client._imap
    imap.untagged_responses.pop("STATUS", None)
    wanted = " ".join(item.decode() for item in items)
    typ, data = imap._simple_command("LIST", '""', '"*"', f"RETURN (SPECIAL-USE STATUS ({wanted}))")
    if typ != "OK":
        return None
    _typ, listed = imap._untagged_response(typ, data, "LIST")
    statuses: dict[str, dict[bytes, int]] = {}
    for raw in imap.untagged_responses.pop("STATUS", []):
        parsed = parse_response([raw])
        pairs = parsed[-1]
        statuses[_decode(client, parsed[0])] = {
            bytes(pairs[i]).upper(): int(pairs[i + 1]) for i in range(0, len(pairs) - 1, 2)
        }
    folders = []
    for attributes, _delimiter, name in client._proc_folder_list(listed):
        flags = frozenset(bytes(a).upper() for a in attributes)
        folders.append(ListedFolder(str(name), flags, statuses.get(str(name), {})))
    return folders


def _decode(client: MailSession, name: object) -> str:
    if isinstance(name, int):
        return str(name)
    if isinstance(name, bytes) and client.folder_encode:
        return imap_utf7.decode(name)
    return name.decode() if isinstance(name, bytes) else str(name)


def _name(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _status_name(data: bytes | tuple) -> str:
    """The folder a STATUS response names (imaplib keeps a literal name as a tuple)."""
    try:
        return _name(parse_response([data])[0])
    except Exception:  # unparsable: count it as news, a listing costs one command
        return ""
