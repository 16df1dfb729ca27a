"""The user's mailboxes and their message listings."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from flask import Response, g
from flask_smorest import Blueprint

from backend import errors
from backend.mailboxes import listings, registry, search
from backend.reading.full_text import server_search
from backend.store.folders import set_watched
from mobile_api.auditing import audited, note
from mobile_api.auth.tokens import session_required
from mobile_api.compiled_dump import compile_dump, json_response
from mobile_api.context import db, services
from mobile_api.errors import documented_problems
from mobile_api.mailboxes import schemas
from mobile_api.pagination import decode_cursor, encode_cursor

blp = Blueprint("mailboxes", __name__, url_prefix="/api/v1", description="Mailboxes")

_NOT_YOURS = "`not_found`: no such mailbox, or not one of yours (never 403)."
# The hot answers, dumped by functions compiled from their schemas (mobile_api/compiled_dump).
_dump_mailboxes = compile_dump(schemas.MailboxSchema(many=True))
_dump_page = compile_dump(schemas.MessagePageSchema())


@blp.get("/mailboxes")
@audited("mailbox.list_all", target_type="mailbox")
@blp.response(200, schemas.MailboxSchema(many=True))
@session_required
def list_mailboxes() -> Response:
    """The mailboxes the signed-in user owns or is a delegate of, with counts and sync state."""
    result = []
    visible = registry.visible_mailboxes(db=db(), user=g.user)
    counts = listings.counts_by_mailbox(db=db(), mailbox_ids=[m.id for m, _role in visible])
    for mailbox, role in visible:
        unread, total = counts[mailbox.id]
        result.append(
            {
                "id": mailbox.public_id,
                "address": mailbox.address,
                "kind": mailbox.kind,
                "display_name": mailbox.display_name,
                "role": role,
                "unread": unread,
                "total": total,
                "sync": {"state": mailbox.sync_state, "detail": mailbox.sync_detail},
            }
        )
    note(mailboxes=len(result))
    return json_response(_dump_mailboxes(result))


@blp.get("/mailboxes/<mailbox_id>/folders")
@audited("mailbox.folders", target_type="mailbox", target="mailbox_id", mailbox="mailbox_id")
@blp.response(200, schemas.FolderSchema(many=True))
@documented_problems(blp, {404: _NOT_YOURS})
@session_required
def list_folders(mailbox_id: str) -> list[dict]:
    """The mailbox's folders as its server lists them, with their roles and counts.

    Watched folders are synced and ring the phone for new mail; by default every folder
    but Junk and Trash. Folders made, renamed or removed on the desktop show at the next
    folder poll (`ESTAFETTE_FOLDER_POLL_SECONDS`)."""
    mailbox, _role = registry.get_visible_mailbox(db=db(), user=g.user, public_id=mailbox_id)
    return listings.folders(db=db(), mailbox=mailbox)


@blp.patch("/mailboxes/<mailbox_id>/folders")
@audited("mailbox.folders_change", target_type="mailbox", target="mailbox_id", mailbox="mailbox_id")
@blp.arguments(schemas.FolderWatchSchema)
@blp.response(200, schemas.FolderSchema(many=True))
@documented_problems(
    blp,
    {
        403: "`forbidden`: only the mailbox's owner (or an admin) changes its folders.",
        404: _NOT_YOURS,
        422: "`validation_error`, also for a folder the mailbox does not have.",
    },
)
@session_required
def watch_folder(change: dict, mailbox_id: str) -> list[dict]:
    """Watch a folder (sync it, push its new mail) or stop: the mailbox's owner only.

    A delegate reads, flags, files and sends for the mailbox; its settings are the
    owner's (or an administrator's, through the admin API). The sync worker applies the
    change at its next folder poll."""
    mailbox, role = registry.get_visible_mailbox(db=db(), user=g.user, public_id=mailbox_id)
    if role != "owner" and not g.user.is_admin:
        raise errors.Forbidden("Only the mailbox's owner changes which folders are watched")
    folder = registry.find_folder(db=db(), mailbox=mailbox, name=change["folder"])
    if folder is None:
        raise errors.ValidationFailed({"folder": ["No such folder in this mailbox."]})
    set_watched(db=db(), folder=folder, watched=change["watched"])
    note(watched=change["watched"])
    db().commit()
    return listings.folders(db=db(), mailbox=mailbox)


@blp.get("/mailboxes/<mailbox_id>/messages")
@audited("mailbox.list", target_type="mailbox", target="mailbox_id", mailbox="mailbox_id")
@blp.arguments(schemas.MessageListArgsSchema(), location="query")  # one instance, not one per call
@blp.response(200, schemas.MessagePageSchema)
@documented_problems(
    blp,
    {
        400: "`search_unsupported`: a criterion with no words, or a search the server refused.",
        404: _NOT_YOURS + " Also a `text` search in a folder the mailbox does not have.",
        503: "`mailbox_unavailable`: a `text` search needs the mail server; retry later.",
    },
)
@session_required
def list_messages(args: dict, mailbox_id: str) -> Response:
    """One page of envelopes, newest first; `next` continues, null at the end.

    With search criteria, the matches only: a page may hold fewer than `limit` (a search
    walks a bounded number of envelopes per request) and still have a `next`."""
    if not any(name in args for name in _SEARCH_ARGS):
        return _plain_page(args, mailbox_id)
    mailbox, _role = registry.get_visible_mailbox(db=db(), user=g.user, public_id=mailbox_id)
    after = decode_cursor(args["cursor"], 2)
    key = (datetime.fromisoformat(after[0]), int(after[1])) if after else None
    criteria = _criteria(args)
    if criteria is None:
        rows, next_key = listings.list_page(
            db=db(), mailbox=mailbox, folder_name=args["folder"], limit=args["limit"], after=key
        )
    else:
        if "text" in args:
            folder = registry.get_folder(db=db(), mailbox=mailbox, name=args["folder"])
            uids = server_search(mailbox, folder, args["text"], services().settings)
            criteria = replace(criteria, uids=uids)
        note(search=True)
        rows, next_key = search.search_page(
            db=db(),
            mailbox=mailbox,
            folder_name=args["folder"],
            criteria=criteria,
            limit=args["limit"],
            after=key,
        )
    page = {
        "items": [listings.envelope(m, mailbox, args["folder"]) for m in rows],
        "next": encode_cursor(next_key[0].isoformat(), next_key[1]) if next_key else None,
    }
    return json_response(_dump_page(page))


_SEARCH_ARGS = ("q", "text", "sender", "since", "unread", "flagged", "has_attachments", "urgent")


def _plain_page(args: dict, mailbox_id: str) -> Response:
    """The listing without search, the hot call: membership and page in one statement.

    An empty page may mean a mailbox that is not the caller's: only then is membership
    asked on its own, for the 404. A bad cursor is refused after the same check, as on
    the search path, so that it tells nothing about someone else's mailbox."""
    try:
        after = decode_cursor(args["cursor"], 2)
    except errors.ValidationFailed:
        registry.get_visible_mailbox(db=db(), user=g.user, public_id=mailbox_id)
        raise
    key = (datetime.fromisoformat(after[0]), int(after[1])) if after else None
    rows, next_key = listings.visible_page(
        db=db(),
        user=g.user,
        mailbox_id=mailbox_id,
        folder_name=args["folder"],
        limit=args["limit"],
        after=key,
    )
    if not rows:
        registry.get_visible_mailbox(db=db(), user=g.user, public_id=mailbox_id)
    page = {
        "items": [listings.envelope_of_row(row, mailbox_id, args["folder"]) for row in rows],
        "next": encode_cursor(next_key[0].isoformat(), next_key[1]) if next_key else None,
    }
    return json_response(_dump_page(page))


def _criteria(args: dict) -> search.Criteria | None:
    """The search asked for, None for a plain listing; words that are only spaces are no
    search at all, and are refused rather than ignored."""
    for name in ("q", "text", "sender"):
        if name in args and not args[name].strip():
            field = "from" if name == "sender" else name
            raise errors.SearchUnsupported(f"`{field}` holds no words", field=field)
    since = args.get("since")
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    criteria = search.Criteria(
        words=args.get("q"),
        sender=args.get("sender"),
        since=since,
        unread=args.get("unread"),
        flagged=args.get("flagged"),
        has_attachments=args.get("has_attachments"),
        urgent=args.get("urgent"),
    )
    return None if criteria == search.Criteria() and "text" not in args else criteria
