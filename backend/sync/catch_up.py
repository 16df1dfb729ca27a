"""Bring the cache of one folder level with the server: new mail, flag changes, expunges.

Resumable by construction: we keep UIDVALIDITY and the highest UID seen per folder
(RFC 3501 §2.3.1.1), and HIGHESTMODSEQ when the server offers CONDSTORE (RFC 7162), so a
reconnect fetches only what changed while we were away. With QRESYNC (Dovecot offers it),
flag changes and expunges since that MODSEQ come in one FETCH; without it, a MODSEQ search
finds the flags, and a list of the UIDs still there finds the expunges.

One message never blocks a mailbox: a message that a stage (FETCH answer, envelope,
receipt, XDM patient, store) cannot process is stored as `malformed`, counted, logged by
UID and passed; the apps open it raw. Only a lost connection or a database outage stops
a catch-up, and it resumes where the last committed batch ended.

A folder's first import records its baseline (UIDNEXT) with its UIDVALIDITY before the
first batch: below it is old mail, never announced as new, even after a crash mid-import.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.audit.trail import AuditTrail
from backend.mail.envelope import (
    BASIC_FETCH_ITEMS,
    FETCH_ITEMS,
    Envelope,
    flags_state,
    parse_fetch,
    unreadable_envelope,
)
from backend.mail.imap import (
    MailSession,
    ProtocolError,
    SessionAborted,
    fetch_changes_since,
    take_change_notices,
)
from backend.metrics import SYNC_UNPROCESSABLE
from backend.push import outbox
from backend.storage.database import session_scope
from backend.storage.models import Folder, Message
from backend.storage.outage import is_database_outage
from backend.store import cache as store
from backend.store import receipts as stored_receipts
from backend.store.folders import BORN_NEW
from backend.sync import patients, receipts

log = logging.getLogger("estafette.sync")

FETCH_BATCH = 200


@dataclass
class CatchUpResult:
    new_messages: int = 0
    flag_changes: int = 0
    expunged: int = 0
    resynced: bool = False


def enable_change_tracking(client: MailSession) -> tuple[bool, bool]:
    """(condstore, qresync): ask for MODSEQs (RFC 7162 §3.1), and for VANISHED when offered.

    QRESYNC (§3.2) implies CONDSTORE. With it, the server names the UIDs it expunged, live
    in IDLE and, on request, since a MODSEQ: no need to list every UID to find them.
    """
    capabilities = client.capabilities()
    if b"QRESYNC" in capabilities:
        client.enable("QRESYNC")
        return True, True
    if b"CONDSTORE" in capabilities:
        client.enable("CONDSTORE")
        return True, False
    return False, False


def catch_up(
    client: MailSession,
    sessions: sessionmaker[Session],
    *,
    mailbox_id: int,
    folder_name: str = "INBOX",
    selected: dict | None = None,
    condstore: bool | None = None,
    qresync: bool = False,
    flags: bool = True,
    expunges: bool = True,
) -> CatchUpResult:
    """Fetch what is new since our last UID, and reconcile flags and expunges.

    `selected` is the SELECT answer, or, for a folder still selected since then (an IDLE
    event), just its UIDVALIDITY: no re-SELECT per event. HIGHESTMODSEQ is then the highest
    MODSEQ seen in this catch-up's FETCHes (`condstore`), which never runs ahead of changes
    we have not seen: every change it could hide happened before the flag search below.
    `flags`/`expunges` False skip those searches when the IDLE responses announced none.
    `qresync`: QRESYNC is enabled on `client`; one FETCH then finds both kinds of change.
    """
    status = selected if selected is not None else client.select_folder(folder_name)
    take_change_notices(client)  # what was announced until now, this catch-up covers
    uidvalidity = int(status[b"UIDVALIDITY"])
    highest_modseq = status.get(b"HIGHESTMODSEQ")
    if condstore is None:
        condstore = highest_modseq is not None
    fetch_items = [*FETCH_ITEMS, "MODSEQ"] if condstore else FETCH_ITEMS
    seen_modseqs: list[int] = []
    result = CatchUpResult()
    with session_scope(sessions) as db:
        position = store.folder_position(
            db=db,
            mailbox_id=mailbox_id,
            name=folder_name,
            role="inbox" if folder_name == "INBOX" else None,
        )
        first_sync = position.uidvalidity is None
        if not first_sync and position.uidvalidity != uidvalidity:
            log.warning("UIDVALIDITY changed for mailbox %s: full resync", mailbox_id)
            result.resynced = True
        if first_sync or result.resynced:
            # Imported silently, even across a crash: the phone knew this mail, or it is old.
            # But a folder born since the last folder poll (a rule's fileinto :create made
            # it for the mail it holds) is all new mail (backend/store/folders.py).
            born_new = first_sync and position.import_baseline_uid == BORN_NEW
            baseline = 1 if born_new else _uidnext(client, status)
            store.reset_folder(
                db=db, folder_id=position.folder_id, uidvalidity=uidvalidity, baseline_uid=baseline
            )
            position = store.FolderPosition(position.folder_id, uidvalidity, 0, None, baseline)

    new_uids = [
        uid
        for uid in client.search(["UID", f"{position.last_uid + 1}:*"])
        if uid > position.last_uid
    ]
    for start in range(0, len(new_uids), FETCH_BATCH):
        batch = new_uids[start : start + FETCH_BATCH]
        fetched, unreadable = _fetch_new(client, batch, fetch_items)
        envelopes = [
            _envelope(client, mailbox_id, uid, data, readable=uid not in unreadable)
            for uid, data in sorted(fetched.items())
        ]
        seen_modseqs += [e.modseq for e in envelopes if e.modseq]
        attached: list[stored_receipts.Attached] = []
        result.new_messages += _store_new(sessions, mailbox_id, position, envelopes, attached)
        stored_receipts.audit_received(AuditTrail(sessions), attached)  # committed: now audit

    if not first_sync and not result.resynced and position.last_uid > 0:
        found = None
        if qresync and position.highest_modseq is not None and (flags or expunges):
            found = _sync_changes_since(client, sessions, mailbox_id, position, seen_modseqs)
        if found is not None:
            result.flag_changes, result.expunged = found
        else:
            if flags:
                result.flag_changes = _sync_flags(
                    client, sessions, mailbox_id, position, seen_modseqs
                )
            if expunges:
                result.expunged = _sync_expunges(client, sessions, position)
    if highest_modseq is None and condstore and seen_modseqs and flags:
        # Without the flag search, a flag change below these MODSEQs could still be unseen.
        highest_modseq = max(seen_modseqs)
    if highest_modseq is not None and int(highest_modseq) != position.highest_modseq:
        with session_scope(sessions) as db:
            db.execute(
                update(Folder)
                .where(Folder.id == position.folder_id)
                .values(highest_modseq=int(highest_modseq))
            )
    return result


def _uidnext(client: MailSession, status: dict) -> int:
    """UIDNEXT from the SELECT answer (RFC 3501 §6.3.1); if absent, one past the highest UID."""
    if status.get(b"UIDNEXT"):
        return int(status[b"UIDNEXT"])
    uids = client.search(["UID", "1:*"])
    return max(uids, default=0) + 1


def _fetch_new(
    client: MailSession, uids: list[int], items: list[str]
) -> tuple[dict[int, dict[bytes, Any]], set[int]]:
    """FETCH a batch; an answer the client cannot parse is fetched message by message.

    Returns the answers and the UIDs of which only the basic items could be read. A lost
    connection is not a bad message: it propagates, and the catch-up resumes later.
    """
    try:
        return client.fetch(uids, items), set()
    except (SessionAborted, OSError):
        raise
    except Exception as exc:  # any parse failure of a hostile answer
        if len(uids) > 1:
            log.warning(
                "FETCH of %d new messages unreadable (%s); one by one",
                len(uids),
                type(exc).__name__,
            )
            fetched: dict[int, dict[bytes, Any]] = {}
            unreadable: set[int] = set()
            for uid in uids:
                one, bad = _fetch_new(client, [uid], items)
                fetched.update(one)
                unreadable |= bad
            return fetched, unreadable
    try:
        return client.fetch(uids, BASIC_FETCH_ITEMS), set(uids)
    except (SessionAborted, OSError):
        raise
    except Exception:  # not even the flags: keep the UID alone
        return {uid: {} for uid in uids}, set(uids)


def _envelope(
    client: MailSession, mailbox_id: int, uid: int, data: dict[bytes, Any], *, readable: bool
) -> Envelope:
    """The envelope of one new message, through every stage; never raises for its content.

    A stage that fails leaves what the earlier ones read, marked malformed.
    """
    if not readable:
        _unprocessable(mailbox_id, uid, "fetch", None)
        return unreadable_envelope(uid, data)
    envelope: Envelope | None = None
    stage = "envelope"
    try:
        envelope = parse_fetch(uid, data)
        stage = "receipt"
        envelope = receipts.read_report(client, data, envelope)  # MDN/DSN: see store
        stage = "patient"
        return patients.with_patient(client, data, envelope)
    except (SessionAborted, OSError):
        raise
    except Exception as exc:  # one message must not block the mailbox
        _unprocessable(mailbox_id, uid, stage, exc)
        if envelope is None:
            return unreadable_envelope(uid, data)
        return dataclasses.replace(envelope, malformed=True)


def _unprocessable(mailbox_id: int, uid: int, stage: str, exc: BaseException | None) -> None:
    """Count and log by UID; the exception's text may quote the mail, so its type only."""
    SYNC_UNPROCESSABLE.labels(stage=stage).inc()
    log.warning(
        "mailbox %s uid %s: %s stage failed (%s); stored as malformed",
        mailbox_id,
        uid,
        stage,
        type(exc).__name__ if exc is not None else "unreadable FETCH answer",
    )


def _store_new(
    sessions: sessionmaker[Session],
    mailbox_id: int,
    position: store.FolderPosition,
    envelopes: list[Envelope],
    attached: list[stored_receipts.Attached],
) -> int:
    """Store a batch in one transaction; if a message breaks it, store them one by one.

    A message that cannot be stored even so is stored bare (`unreadable_envelope`). A
    database outage is not the message's fault: it propagates.
    """

    def store_some(some: list[Envelope], into: list[stored_receipts.Attached]) -> int:
        with session_scope(sessions) as db:
            return len(
                store.store_new_messages(
                    db=db,
                    mailbox_id=mailbox_id,
                    folder_id=position.folder_id,
                    envelopes=some,
                    announce=True,
                    announce_from_uid=position.import_baseline_uid or 0,
                    attached=into,
                )
            )

    try:
        return store_some(envelopes, attached)
    except Exception as exc:
        if is_database_outage(exc) or len(envelopes) == 0:
            raise
    stored = 0
    for envelope in envelopes:
        one: list[stored_receipts.Attached] = []
        try:
            stored += store_some([envelope], one)
            attached += one
        except Exception as exc:
            if is_database_outage(exc):
                raise
            _unprocessable(mailbox_id, envelope.uid, "store", exc)
            bare = unreadable_envelope(envelope.uid, {})
            bare.date, bare.size, bare.seen = envelope.date, envelope.size, envelope.seen
            stored += store_some([bare], [])
    return stored


def _sync_flags(
    client: MailSession,
    sessions: sessionmaker[Session],
    mailbox_id: int,
    position: store.FolderPosition,
    seen_modseqs: list[int],
) -> int:
    """Flag changes made elsewhere (the desktop client).

    With CONDSTORE, `SEARCH MODSEQ` (RFC 7162 §3.1.5) names just the messages that changed;
    without it, every cached message's flags are fetched again.
    """
    if position.highest_modseq is not None:
        uids = [
            u
            for u in client.search(["MODSEQ", str(position.highest_modseq + 1)])
            if u <= position.last_uid
        ]
    else:
        uids = client.search(["UID", f"1:{position.last_uid}"])
    items = ["FLAGS", "MODSEQ"] if position.highest_modseq is not None else ["FLAGS"]
    changed: dict = {}
    for start in range(0, len(uids), FETCH_BATCH * 5):
        changed.update(client.fetch(uids[start : start + FETCH_BATCH * 5], items))
    return _apply_flags(sessions, mailbox_id, position, changed, seen_modseqs)


def _sync_changes_since(
    client: MailSession,
    sessions: sessionmaker[Session],
    mailbox_id: int,
    position: store.FolderPosition,
    seen_modseqs: list[int],
) -> tuple[int, int] | None:
    """Flag changes and expunges since our MODSEQ, in one command (RFC 7162 §3.2.6).

    None when the server refuses the command it advertised: the caller searches instead.
    """
    try:
        changed, vanished = fetch_changes_since(client, position.last_uid, position.highest_modseq)
    except SessionAborted:
        raise  # the connection is gone: reconnect
    except ProtocolError as exc:
        log.warning(
            "mailbox %s: UID FETCH CHANGEDSINCE refused (%s); searching instead",
            mailbox_id,
            type(exc).__name__,
        )
        return None
    flag_changes = _apply_flags(sessions, mailbox_id, position, changed, seen_modseqs)
    if not vanished:
        return flag_changes, 0
    gone: list[int] = []
    with session_scope(sessions) as db:
        for start in range(0, len(vanished), store.IN_CHUNK):
            gone += db.scalars(
                select(Message.id).where(
                    Message.folder_id == position.folder_id,
                    Message.uid.in_(vanished[start : start + store.IN_CHUNK]),
                )
            )
        return flag_changes, store.remove_messages(db=db, message_ids=gone)


def _apply_flags(
    sessions: sessionmaker[Session],
    mailbox_id: int,
    position: store.FolderPosition,
    changed: dict,
    seen_modseqs: list[int],
) -> int:
    """Store the flags the server reported; a message that became read clears the phones."""
    seen_modseqs += [int(d[b"MODSEQ"][0]) for d in changed.values() if d.get(b"MODSEQ")]
    if not changed:
        return 0
    count = 0
    with session_scope(sessions) as db:
        rows = {
            m.uid: m
            for m in db.scalars(
                select(Message).where(
                    Message.folder_id == position.folder_id, Message.uid.in_(list(changed))
                )
            )
        }
        seq = store._next_change_seq(db, mailbox_id)
        for uid, data in changed.items():
            message = rows.get(uid)
            if message is None:
                continue
            flags = flags_state(data.get(b"FLAGS", ()))
            if (message.seen, message.flagged, message.answered) == (
                flags["seen"],
                flags["flagged"],
                flags["answered"],
            ):
                continue
            became_read = flags["seen"] and not message.seen
            message.seen, message.flagged, message.answered = (
                flags["seen"],
                flags["flagged"],
                flags["answered"],
            )
            message.change_seq = seq
            count += 1
            if became_read:
                outbox.announce_read(db, mailbox_id=mailbox_id, message_id=message.id)
    return count


def _sync_expunges(
    client: MailSession, sessions: sessionmaker[Session], position: store.FolderPosition
) -> int:
    """Messages gone from the server leave the cache too (IMAP is the source of truth)."""
    on_server = set(client.search(["UID", f"1:{position.last_uid}"]))
    with session_scope(sessions) as db:
        cached = dict(
            db.execute(
                # Only UIDs the search covered: messages fetched just now are newer.
                select(Message.uid, Message.id).where(
                    Message.folder_id == position.folder_id, Message.uid <= position.last_uid
                )
            ).all()
        )
        gone = [mid for uid, mid in cached.items() if uid not in on_server]
        return store.remove_messages(db=db, message_ids=gone)
