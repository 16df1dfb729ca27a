"""POST a message from a mailbox, and POST a read receipt for a received one.

Both check membership first (404 for a mailbox or message the user may not see), refuse
recipients outside the MSSanté trust space with nothing sent (422), and leave an audit
record naming mailbox and message by opaque id, whatever the outcome.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Callable
from html import escape
from typing import Any, ClassVar

from flask import g, request
from flask_smorest import Blueprint

from backend import errors
from backend.mailboxes import registry
from backend.outgoing import drafts, sending
from backend.outgoing.compose import Attachment
from backend.reading import messages as reading
from backend.reading import sanitize
from backend.reading.filenames import clean_filename
from mobile_api.auditing import audited, note
from mobile_api.auth.tokens import session_required
from mobile_api.context import db, services
from mobile_api.errors import documented_problems
from mobile_api.outgoing import schemas

_CONTENT_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}$"
)


class SendBlueprint(Blueprint):
    """JSON or multipart on one route: webargs' `json_or_form`, documented as both bodies."""

    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING: ClassVar[dict[str, str]] = {
        **Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "json_or_form": "application/json",
    }


blp = SendBlueprint("outgoing", __name__, url_prefix="/api/v1", description="Sending")


def _sent(run: Callable[[], Any]) -> Any:
    """Run the send and note the resulting message id for the audit record."""
    try:
        result = run()
    except errors.RecipientsPartiallyRefused as exc:
        # Sent to the others: the Sent copy is the target; the refused are counted, not named.
        note(target=exc.extra.get("id"), refused=len(exc.extra.get("refused", ())))
        raise
    note(
        target=getattr(result, "id", None),
        unknown_recipients=len(getattr(result, "warnings", ())),
    )
    return result


def _attachments(limit: int) -> tuple[Attachment, ...]:
    """Uploaded files, read up to the mailbox's limit (past it: 413, nothing sent)."""
    result, total = [], 0
    for upload in request.files.getlist("attachments"):
        data = upload.stream.read(limit - total + 1)
        total += len(data)
        if total > limit:
            raise errors.PayloadTooLarge(
                f"The attachments exceed this mailbox's limit of {limit} bytes", limit=limit
            )
        filename = clean_filename(upload.filename) or "attachment"
        content_type = (upload.mimetype or "").lower()
        if not _CONTENT_TYPE.match(content_type) or content_type == "application/octet-stream":
            content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        result.append(Attachment(filename=filename, content_type=content_type, data=data))
    return tuple(result)


@blp.post("/mailboxes/<mailbox_id>/messages")
@audited("message.send", target_type="message", mailbox="mailbox_id")
@blp.arguments(schemas.SendMessageSchema, location="json_or_form")
@blp.doc(requestBody={"content": {"multipart/form-data": {"schema": schemas.MULTIPART_BODY}}})
@blp.response(202, schemas.SentMessageSchema)
@documented_problems(
    blp,
    {
        422: "`validation_error`, `recipient_outside_trust_space`, or "
        "`recipient_not_in_directory` (when the admin refuses addresses unknown to the "
        "national directory): nothing was sent.",
    },
)
@session_required
def send_message(args: dict, mailbox_id: str) -> sending.SentMessage:
    """Send a message (or a reply) inside the MSSanté trust space; a copy goes to Sent."""
    settings = services().settings
    mailbox, _role = registry.get_visible_mailbox(db=db(), user=g.user, public_id=mailbox_id)
    original = None
    if args["in_reply_to"]:
        original = reading.get_visible_message(db=db(), user=g.user, public_id=args["in_reply_to"])
        if original.mailbox.id != mailbox.id:
            raise errors.ValidationFailed({"in_reply_to": ["Reply from the original's mailbox."]})
    forwarded = None
    if args["forward_of"]:
        forwarded = reading.get_visible_message(db=db(), user=g.user, public_id=args["forward_of"])
        if forwarded.mailbox.id != mailbox.id:
            raise errors.ValidationFailed({"forward_of": ["Forward from the original's mailbox."]})
    attachments = _attachments(sending.size_limit(mailbox, settings))
    text, html = args["text"], args["html"]
    if html:
        if not sanitize.is_renderable(html):
            raise errors.ValidationFailed({"html": ["Too large or too deeply nested to send."]})
        html = sanitize.sanitize_html(html)
        text = text or sanitize.html_to_text(html)
    send_request = sending.SendRequest(
        to=tuple(args["to"]),
        cc=tuple(args["cc"]),
        bcc=tuple(args["bcc"]),
        subject=args["subject"],
        text=_signed(text) if args["signature"] else text,
        html=_signed_html(html) if html and args["signature"] else html,
        attachments=attachments,
        in_reply_to=original,
        reply_all=args["reply_all"],
        forward_of=forwarded,
        request_read_receipt=args["request_read_receipt"],
        urgent=args["urgent"],
    )
    note(
        recipients=len(send_request.to) + len(send_request.cc) + len(send_request.bcc),
        urgent=send_request.urgent,
        attachments=len(attachments),
        read_receipt_requested=send_request.request_read_receipt,
        in_reply_to=original.message.public_id if original else None,
        forward_of=forwarded.message.public_id if forwarded else None,
    )
    result = _sent(
        lambda: sending.send_message(
            db=db(), settings=settings, mailbox=mailbox, request=send_request
        )
    )
    db().commit()
    return result


@blp.post("/messages/<message_id>/read-receipt")
@audited("message.read_receipt", target_type="message", target="message_id")
@blp.response(202, schemas.ReadReceiptSchema)
@session_required
def send_read_receipt(message_id: str) -> dict:
    """Send the read receipt (RFC 8098 MDN) the sender of this message asked for."""
    located = reading.get_visible_message(db=db(), user=g.user, public_id=message_id)
    note(mailbox=located.mailbox.public_id)
    mdn_id = sending.send_read_receipt(settings=services().settings, located=located)
    return {"message_id": mdn_id}


_DRAFT_PROBLEMS = {
    404: "`not_found`: no such draft (or mailbox), or not one of yours.",
    422: "`validation_error` or `unsafe_header`: nothing was saved.",
    503: "`mailbox_unavailable`: the mail server cannot be reached; the draft was not saved.",
}


def _draft_request(args: dict) -> drafts.DraftRequest:
    note(recipients=len(args["to"]) + len(args["cc"]) + len(args["bcc"]))
    return drafts.DraftRequest(
        to=tuple(args["to"]),
        cc=tuple(args["cc"]),
        bcc=tuple(args["bcc"]),
        subject=args["subject"],
        text=args["text"],
    )


@blp.post("/mailboxes/<mailbox_id>/drafts")
@audited("draft.save", target_type="message", mailbox="mailbox_id")
@blp.arguments(schemas.DraftSchema)
@blp.response(201, schemas.SavedDraftSchema)
@documented_problems(blp, _DRAFT_PROBLEMS)
@session_required
def save_draft(args: dict, mailbox_id: str) -> drafts.SavedDraft:
    """Keep a draft in the mailbox's Drafts folder, where the desktop client opens it."""
    mailbox, _role = registry.get_visible_mailbox(db=db(), user=g.user, public_id=mailbox_id)
    saved = drafts.save_draft(
        db=db(), settings=services().settings, mailbox=mailbox, request=_draft_request(args)
    )
    note(target=saved.id)
    return saved


@blp.put("/drafts/<draft_id>")
@audited("draft.save", target_type="message", target="draft_id")
@blp.arguments(schemas.DraftSchema)
@blp.response(200, schemas.SavedDraftSchema)
@documented_problems(blp, _DRAFT_PROBLEMS)
@session_required
def replace_draft(args: dict, draft_id: str) -> drafts.SavedDraft:
    """Save a draft again: the new version replaces the old one on the server."""
    located = reading.get_visible_message(db=db(), user=g.user, public_id=draft_id)
    note(mailbox=located.mailbox.public_id)
    return drafts.save_draft(
        db=db(),
        settings=services().settings,
        mailbox=located.mailbox,
        request=_draft_request(args),
        replacing=located,
    )


@blp.delete("/drafts/<draft_id>")
@audited("draft.discard", target_type="message", target="draft_id")
@blp.response(204)
@documented_problems(blp, {s: _DRAFT_PROBLEMS[s] for s in (404, 503)})
@session_required
def discard_draft(draft_id: str) -> None:
    """Throw the draft away, on the server too."""
    located = reading.get_visible_message(db=db(), user=g.user, public_id=draft_id)
    note(mailbox=located.mailbox.public_id)
    drafts.discard_draft(db=db(), settings=services().settings, located=located)


SIGNATURE_SEPARATOR = "\n\n-- \n"  # RFC 3676 §4.3: clients recognise and trim it in replies


def _signed(text: str) -> str:
    signature = g.user.signature
    return f"{text.rstrip()}{SIGNATURE_SEPARATOR}{signature}" if signature else text


def _signed_html(html: str) -> str:
    signature = g.user.signature
    if not signature:
        return html
    lines = "<br>".join(escape(line) for line in signature.splitlines())
    return f'{html}<div class="signature">-- <br>{lines}</div>'


@blp.get("/me/signature")
@audited("user.signature_read", target_type="user")
@blp.response(200, schemas.SignatureSchema)
@session_required
def get_signature() -> dict:
    """What goes under the mail this user sends, from any device."""
    return {"text": g.user.signature or ""}


@blp.put("/me/signature")
@audited("user.signature_change", target_type="user")
@blp.arguments(schemas.SignatureSchema)
@blp.response(200, schemas.SignatureSchema)
@session_required
def put_signature(args: dict) -> dict:
    """Set it (empty: none). Added under each message sent, unless `signature: false`."""
    g.user.signature = args["text"].strip() or None
    db().commit()
    return {"text": g.user.signature or ""}
