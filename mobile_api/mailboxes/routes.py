"""The user's mailboxes and their message listings."""

from __future__ import annotations

from datetime import datetime

from flask import g
from flask_smorest import Blueprint

from backend.mailboxes import listings, registry
from mobile_api.auditing import audited, note
from mobile_api.auth.tokens import session_required
from mobile_api.context import db
from mobile_api.mailboxes import schemas
from mobile_api.pagination import decode_cursor, encode_cursor

blp = Blueprint("mailboxes", __name__, url_prefix="/api/v1", description="Mailboxes")


@blp.get("/mailboxes")
@audited("mailbox.list_all", target_type="mailbox")
@blp.response(200, schemas.MailboxSchema(many=True))
@session_required
def list_mailboxes() -> list[dict]:
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
    return result


@blp.get("/mailboxes/<mailbox_id>/messages")
@audited("mailbox.list", target_type="mailbox", target="mailbox_id", mailbox="mailbox_id")
@blp.arguments(schemas.MessageListArgsSchema, location="query")
@blp.response(200, schemas.MessagePageSchema)
@session_required
def list_messages(args: dict, mailbox_id: str) -> dict:
    """One page of envelopes, newest first; `next` continues, null at the end."""
    mailbox, _role = registry.get_visible_mailbox(db=db(), user=g.user, public_id=mailbox_id)
    after = decode_cursor(args["cursor"], 2)
    key = (datetime.fromisoformat(after[0]), int(after[1])) if after else None
    rows, next_key = listings.list_page(
        db=db(), mailbox=mailbox, folder_name=args["folder"], limit=args["limit"], after=key
    )
    return {
        "items": [listings.envelope(m, mailbox, args["folder"]) for m in rows],
        "next": encode_cursor(next_key[0].isoformat(), next_key[1]) if next_key else None,
    }
