"""Reading the envelope cache: listings and counts, keyset-paginated, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Row, Select, bindparam, false, func, select, tuple_
from sqlalchemy.orm import Session, defer

from backend.storage.models import Folder, Mailbox, Membership, Message, User
from backend.store import folders as store_folders  # the module: folders imports us back

XDM_SUBJECT_PREFIX = "XDM/1.0/DDM+"


def display_subject(subject: str | None) -> str | None:
    """MSSanté: the `XDM/1.0/DDM+` prefix is a transport marker, hidden from readers."""
    if subject and subject.startswith(XDM_SUBJECT_PREFIX):
        return subject[len(XDM_SUBJECT_PREFIX) :].lstrip()
    return subject


# What an envelope never shows: left in the database, so a page decrypts only what it serves.
NOT_IN_ENVELOPE = (defer(Message.message_id_header), defer(Message.mss_headers))


def envelope(message: Message, mailbox: Mailbox, folder_name: str) -> dict[str, Any]:
    recipients = message.recipients or {}
    return {
        "id": message.public_id,
        "mailbox_id": mailbox.public_id,
        "folder": folder_name,
        "subject": display_subject(message.subject),
        "from_": message.sender,
        "to": recipients.get("to", []),
        "cc": recipients.get("cc", []),
        "date": message.sort_key,
        "seen": message.seen,
        "flagged": message.flagged,
        "answered": message.answered,
        "has_attachments": message.has_attachments,
        "size": message.size,
        "mdn_requested": message.mdn_requested,
        "urgent": message.urgent,
        "malformed": message.malformed,
        "patient": message.patient,
        "receipts": message.receipts or [],
    }


# What an envelope shows, as plain columns: a page read with Core, no ORM objects built.
ENVELOPE_COLUMNS = (
    Message.id,
    Message.public_id,
    Message.sort_key,
    Message._subject.label("subject"),
    Message._sender.label("sender"),
    Message._recipients.label("recipients"),
    Message._patient.label("patient"),
    Message._receipts.label("receipts"),
    Message.seen,
    Message.flagged,
    Message.answered,
    Message.has_attachments,
    Message.size,
    Message.mdn_requested,
    Message.urgent,
    Message.malformed,
)
_SEALED = {name: vars(Message)[name] for name in ("subject", "sender", "recipients", "patient")}
_RECEIPTS = vars(Message)["receipts"]


def envelope_of_row(row: Row[Any], mailbox_id: str, folder_name: str) -> dict[str, Any]:
    """`envelope()` of a row of ENVELOPE_COLUMNS, opening its sealed fields for its row."""
    public_id = row.public_id
    subject, sender, recipients, patient = (
        field.open(public_id, getattr(row, name)) for name, field in _SEALED.items()
    )
    recipients = recipients or {}
    return {
        "id": public_id,
        "mailbox_id": mailbox_id,
        "folder": folder_name,
        "subject": display_subject(subject),
        "from_": sender,
        "to": recipients.get("to", []),
        "cc": recipients.get("cc", []),
        "date": row.sort_key,
        "seen": row.seen,
        "flagged": row.flagged,
        "answered": row.answered,
        "has_attachments": row.has_attachments,
        "size": row.size,
        "mdn_requested": row.mdn_requested,
        "urgent": row.urgent,
        "malformed": row.malformed,
        "patient": patient,
        "receipts": _RECEIPTS.open(public_id, row.receipts) or [],
    }


def visible_page(
    *,
    db: Session,
    user: User,
    mailbox_id: str,
    folder_name: str,
    limit: int,
    after: tuple[datetime, int] | None,
) -> tuple[list[Row[Any]], tuple[datetime, int] | None]:
    """One page of a folder of a mailbox `user` is a member of, in one statement.

    Membership and folder are scalar subqueries evaluated once before the index seek, so
    the check costs no round trip of its own. An empty page is also what a mailbox that is
    not the user's gives: the caller tells the two apart (registry.get_visible_mailbox).
    """
    params: dict[str, Any] = {
        "user_id": user.id,
        "mailbox_id": mailbox_id,
        "folder_name": folder_name,
        "limit": limit + 1,
    }
    if after is not None:
        params["after_key"], params["after_id"] = after
    rows = list(db.execute(_VISIBLE_PAGE[after is not None], params))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, ((rows[-1].sort_key, rows[-1].id) if more else None)


def _visible_page_query(after: bool) -> Select[Any]:
    """`visible_page`'s statement, built once with bound values: building it costs more
    Python than the database takes to run it."""
    mailbox_pk = (
        select(Membership.mailbox_id)
        .join(Mailbox, Mailbox.id == Membership.mailbox_id)
        .where(
            Membership.user_id == bindparam("user_id"),
            Mailbox.public_id == bindparam("mailbox_id"),
        )
        .scalar_subquery()
    )
    folder_pk = (
        select(Folder.id)
        .where(Folder.mailbox_id == mailbox_pk, Folder.name == bindparam("folder_name"))
        .scalar_subquery()
    )
    query = select(*ENVELOPE_COLUMNS).where(
        Message.mailbox_id == mailbox_pk, Message.folder_id == folder_pk
    )
    if after:
        key = (
            bindparam("after_key", type_=Message.sort_key.type),
            bindparam("after_id", type_=Message.id.type),
        )
        query = query.where(tuple_(Message.sort_key, Message.id) < tuple_(*key))
    ordered = query.order_by(Message.sort_key.desc(), Message.id.desc())
    return ordered.limit(bindparam("limit", type_=Integer))


_VISIBLE_PAGE = {after: _visible_page_query(after) for after in (False, True)}


def counts(*, db: Session, mailbox: Mailbox, folder_name: str = "INBOX") -> tuple[int, int]:
    """(unread, total) in one folder."""
    row = db.execute(
        select(
            func.count(Message.id),
            func.count(Message.id).filter(Message.seen.is_(False)),
        )
        .join(Folder, Folder.id == Message.folder_id)
        .where(Message.mailbox_id == mailbox.id, Folder.name == folder_name)
    ).one()
    return int(row[1]), int(row[0])


def counts_by_mailbox(
    *, db: Session, mailbox_ids: list[int], folder_name: str = "INBOX"
) -> dict[int, tuple[int, int]]:
    """(unread, total) per mailbox in one query: index-only counts on `ix_messages_unread`."""
    if not mailbox_ids:
        return {}

    def count(*only: Any) -> Any:
        return (
            select(func.count())
            .where(Message.mailbox_id == Folder.mailbox_id, Message.folder_id == Folder.id, *only)
            .correlate(Folder)
            .scalar_subquery()
        )

    rows = db.execute(
        # `seen = false`, not `seen IS FALSE`: only the former is a btree index condition.
        select(Folder.mailbox_id, count(Message.seen == false()), count()).where(
            Folder.mailbox_id.in_(mailbox_ids), Folder.name == folder_name
        )
    ).all()
    found = {mailbox_id: (int(unread), int(total)) for mailbox_id, unread, total in rows}
    return {mailbox_id: found.get(mailbox_id, (0, 0)) for mailbox_id in mailbox_ids}


def in_folder(mailbox: Mailbox, folder_name: str) -> Select[tuple[Message]]:
    """The folder's envelopes, as a statement to filter further and page.

    The folder is a scalar subquery, evaluated once before the index seek."""
    folder_id = (
        select(Folder.id)
        .where(Folder.mailbox_id == mailbox.id, Folder.name == folder_name)
        .scalar_subquery()
    )
    return (
        select(Message)
        .options(*NOT_IN_ENVELOPE)
        .where(Message.mailbox_id == mailbox.id, Message.folder_id == folder_id)
    )


def newest_first(
    query: Select[tuple[Message]], after: tuple[datetime, int] | None
) -> Select[tuple[Message]]:
    """`query` in listing order, from just after the key `after`."""
    if after is not None:
        key, last_id = after
        # A row comparison, so the index seeks straight to the cursor: no OFFSET-like scan.
        query = query.where(tuple_(Message.sort_key, Message.id) < tuple_(key, last_id))
    return query.order_by(Message.sort_key.desc(), Message.id.desc())


def keyset_page(
    db: Session, query: Select[tuple[Message]], limit: int, after: tuple[datetime, int] | None
) -> tuple[list[Message], tuple[datetime, int] | None]:
    """One page of `query` newest first, and the key to continue from (None at the end)."""
    rows = list(db.scalars(newest_first(query, after).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, ((rows[-1].sort_key, rows[-1].id) if more else None)


def list_page(
    *,
    db: Session,
    mailbox: Mailbox,
    folder_name: str,
    limit: int,
    after: tuple[datetime, int] | None,
) -> tuple[list[Message], tuple[datetime, int] | None]:
    """One page of the folder newest first, in one statement."""
    return keyset_page(db, in_folder(mailbox, folder_name), limit, after)


def folders(*, db: Session, mailbox: Mailbox) -> list[dict[str, Any]]:
    """The mailbox's folders, INBOX first, then by name, with unread and total.

    A watched folder counts what the cache holds, as its listing shows; an unwatched one
    (Junk, Trash by default) what the server's STATUS said at the last poll.
    """
    rows = db.execute(
        select(
            Folder,
            select(func.count(Message.id))
            .where(Message.folder_id == Folder.id)
            .correlate(Folder)
            .scalar_subquery(),
            select(func.count(Message.id))
            .where(Message.folder_id == Folder.id, Message.seen == false())
            .correlate(Folder)
            .scalar_subquery(),
        ).where(Folder.mailbox_id == mailbox.id)
    ).all()
    result = []
    for folder, cached_total, cached_unread in rows:
        watched = store_folders.is_watched(folder)
        result.append(
            {
                "name": folder.name,
                "role": folder.role,
                "watched": watched,
                "unread": int(cached_unread) if watched else (folder.unseen or 0),
                "total": int(cached_total) if watched else (folder.messages or 0),
            }
        )
    return sorted(result, key=lambda f: (f["role"] != "inbox", f["name"].casefold()))
