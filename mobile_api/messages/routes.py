"""One message: open it, download its attachments, flag it, move it to Trash.

Every call checks membership first (another user's message is 404, never 403), talks to
the IMAP server (503 `mailbox_unavailable` when it cannot), and leaves an audit record
that names the message by its opaque id only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from flask import Response, g
from flask_smorest import Blueprint

from backend import errors
from backend.mail import xdm
from backend.mailboxes import listings, registry
from backend.reading import messages as reading
from backend.reading.cache import BodyCache
from backend.reading.filenames import clean_filename
from backend.store import actions
from mobile_api.auditing import audited, note
from mobile_api.auth.tokens import session_required
from mobile_api.compiled_dump import compile_dump, json_response
from mobile_api.context import db, services
from mobile_api.errors import documented_problems
from mobile_api.messages import schemas

blp = Blueprint("messages", __name__, url_prefix="/api/v1", description="Messages")

_PROBLEMS = {
    404: "`not_found`: no such message, or not in a mailbox of yours (never 403).",
    422: "`validation_error`, or `archive_rejected` for an unsafe IHE_XDM.ZIP.",
    503: "`mailbox_unavailable`: the IMAP server cannot be reached; retry later.",
}


def _problems(*statuses: int) -> Callable[[Callable], Callable]:
    return documented_problems(blp, {status: _PROBLEMS[status] for status in statuses})


# The hot answer (a cached body), dumped by a function compiled from its schema.
_dump_message = compile_dump(schemas.MessageSchema())

# A part is `2`, `2.1` or `2/xdm/1`: anything else stays out of the audit record.
_PART = re.compile(r"^[0-9][0-9a-z./]{0,63}$")


def _body_cache() -> BodyCache:
    return BodyCache(services().settings.var_dir / "body-cache")


def _locate(message_id: str) -> reading.Located:
    """The caller's message, its mailbox noted for the audit record (404 otherwise)."""
    located = reading.get_visible_message(db=db(), user=g.user, public_id=message_id)
    note(mailbox=located.mailbox.public_id)
    return located


def _envelope(located: reading.Located) -> dict[str, Any]:
    return listings.envelope(located.message, located.mailbox, located.folder.name)


@blp.get("/messages/<message_id>")
@audited("message.read", target_type="message", target="message_id")
@blp.response(200, schemas.MessageSchema)
@_problems(404, 503)
@session_required
def get_message(message_id: str) -> Response:
    """The message with its text, sanitized HTML, X-MSS headers and attachments.

    Reading does not mark the message seen: PATCH `seen` does. A message that cannot be
    parsed is still returned, as raw text with the `malformed` warning.
    """
    located = _locate(message_id)
    readable = reading.read_message(located, cache=_body_cache(), settings=services().settings)
    db().commit()
    result = _envelope(located)
    if not (result.get("patient") or {}).get("name") and readable.patient is not None:
        result["patient"] = xdm.patient_dict(readable.patient)
    result.update(
        text=readable.text,
        html=readable.html,
        headers=readable.headers,
        warnings=readable.warnings,
        attachments=[
            {
                "part": a.part,
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "warnings": a.warnings,
                "documents": None
                if a.documents is None
                else [
                    {
                        "title": d.title,
                        "code": d.code,
                        "code_display": d.code_display,
                        "class_code": d.class_code,
                        "content_type": d.content_type,
                        "part": f"{a.part}/xdm/{d.index}",
                        "patient": xdm.patient_dict(d.patient),
                    }
                    for d in a.documents
                ],
            }
            for a in readable.attachments
        ],
    )
    if located.message.malformed and "malformed" not in result["warnings"]:
        result["warnings"] = sorted([*result["warnings"], "malformed"])
    return json_response(_dump_message(result))


def content_disposition(filename: str | None, fallback: str = "attachment") -> str:
    """RFC 6266: an ASCII `filename` for old clients and the exact name in `filename*`."""
    name = clean_filename(filename) or fallback
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]", "_", ascii_name).strip(" .") or fallback
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


@blp.get("/messages/<message_id>/attachments/<path:part>")
@audited("message.download", target_type="message", target="message_id")
@blp.response(
    200,
    description="The attachment's bytes, streamed",
    content_type="application/octet-stream",
)
@_problems(404, 422, 503)
@session_required
def download_attachment(message_id: str, part: str) -> Response:
    """One attachment (`2`), or one document of an IHE_XDM.ZIP (`2/xdm/1`), streamed."""
    note(part=part if _PART.match(part) else None)
    located = _locate(message_id)
    download = reading.open_part(located, part, cache=_body_cache(), settings=services().settings)
    db().commit()
    response = Response(download.chunks, mimetype=download.content_type, direct_passthrough=True)
    response.headers["Content-Disposition"] = content_disposition(download.filename)
    # Never rendered by a browser under the API's origin, whatever the sender claims.
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


@blp.patch("/messages/<message_id>")
@audited("message.flags", target_type="message", target="message_id")
@blp.arguments(schemas.FlagsSchema)
@blp.response(200, schemas.EnvelopeSchema)
@_problems(404, 422, 503)
@session_required
def update_flags(flags: dict[str, bool], message_id: str) -> dict[str, Any]:
    """Mark seen/unseen or flagged/unflagged: stored on the IMAP server first."""
    located = _locate(message_id)
    change = actions.FlagChange(seen=flags.get("seen"), flagged=flags.get("flagged"))
    note(**{k: v for k, v in flags.items() if v is not None})
    actions.set_flags(db=db(), located=located, change=change, settings=services().settings)
    db().commit()
    return _envelope(located)


@blp.post("/messages/<message_id>/move")
@audited("message.move", target_type="message", target="message_id")
@blp.arguments(schemas.MoveSchema)
@blp.response(200, schemas.EnvelopeSchema)
@blp.alt_response(204, description="moved into a folder that is not watched (Junk, Trash)")
@_problems(404, 422, 503)
@session_required
def move_message(move: dict[str, str], message_id: str) -> Any:
    """File the message into another folder of its mailbox: on the server first (IMAP
    MOVE, RFC 6851), then in the cache. The desktop client sees it there at once."""
    located = _locate(message_id)
    target = registry.find_folder(db=db(), mailbox=located.mailbox, name=move["folder"])
    if target is None:
        raise errors.ValidationFailed({"folder": ["No such folder in this mailbox."]})
    kept = actions.move_message(
        db=db(), located=located, target=target, settings=services().settings
    )
    db().commit()
    if not kept:
        _body_cache().discard(message_id)
        return Response(status=204)
    _body_cache().discard(message_id)  # cached under its old place on the server
    return _envelope(reading.Located(located.message, located.mailbox, target, located.role))


@blp.delete("/messages/<message_id>")
@audited("message.delete", target_type="message", target="message_id")
@blp.response(204)
@_problems(404, 503)
@session_required
def delete_message(message_id: str) -> None:
    """Move the message to the mailbox's Trash (on the server, then in the cache)."""
    located = _locate(message_id)
    actions.move_to_trash(db=db(), located=located, settings=services().settings)
    db().commit()
    _body_cache().discard(message_id)
