"""GET /sync: JMAP `/changes` in spirit, over every mailbox the user may see.

The state is sealed like a cursor: the user's id and, per visible mailbox, the last change
number the client holds. It only ever names mailboxes the user sees at the time it is made,
so a lost delegation leaks nothing: that mailbox is listed in `removed_mailboxes` and no
longer read.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from flask import Response, g
from flask_smorest import Blueprint

from backend import errors
from backend.mailboxes import change_log, listings, registry
from backend.storage.encryption import DataKeyError, decrypt, encrypt
from mobile_api.auditing import also, audited, note
from mobile_api.auth.tokens import session_required
from mobile_api.compiled_dump import compile_dump, json_response
from mobile_api.context import db
from mobile_api.delta_sync import schemas
from mobile_api.errors import PROBLEM_JSON, ProblemSchema

blp = Blueprint("changes", __name__, url_prefix="/api/v1", description="Delta sync")

_STATE_CONTEXT = b"sync-state"
_dump_sync = compile_dump(schemas.SyncSchema())  # the hot answer: mobile_api/compiled_dump


def encode_state(user_id: str, positions: dict[str, int]) -> str:
    sealed = encrypt(json.dumps({"u": user_id, "m": positions}).encode(), _STATE_CONTEXT)
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def decode_state(state: str, user_id: str) -> dict[str, int]:
    """A state we issued to this user; anything else is a `validation_error` on `since`."""
    try:
        sealed = base64.urlsafe_b64decode(state + "=" * (-len(state) % 4))
        value = json.loads(decrypt(sealed, _STATE_CONTEXT))
        positions = value["m"]
        if value["u"] != user_id or not all(
            isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in positions.items()
        ):
            raise ValueError("not this user's state")
    except (ValueError, TypeError, KeyError, AttributeError, DataKeyError):
        raise errors.ValidationFailed({"since": ["Not a state this server issued."]}) from None
    return positions


@blp.get("/sync")
@audited("sync.read", target_type="user")
@blp.arguments(schemas.SyncArgsSchema(), location="query")  # one instance, not one per call
@blp.response(200, schemas.SyncSchema)
@blp.alt_response(
    400,
    schema=ProblemSchema,
    content_type=PROBLEM_JSON,
    description="`cannot_calculate_changes`: the state is too old; sync again without `since`.",
)
@session_required
def sync(args: dict) -> Response:
    """Everything that changed since `since` (or a full snapshot), in pages of about `limit`."""
    known = decode_state(args["since"], g.user.public_id) if args["since"] else {}
    visible = [mailbox for mailbox, _role in registry.visible_mailboxes(db=db(), user=g.user)]
    visible.sort(key=lambda mailbox: mailbox.id)
    heads = change_log.change_heads(db(), visible)
    positions: dict[str, int] = {}
    found: list[dict[str, Any]] = []
    budget, more = args["limit"], False
    for mailbox in visible:
        since = known.get(mailbox.public_id, 0)
        if more or budget <= 0:
            positions[mailbox.public_id] = since
            more = more or since < heads[mailbox.id]
            continue
        delta = change_log.mailbox_changes(
            db(), mailbox, since=since, budget=budget, head=heads[mailbox.id]
        )
        positions[mailbox.public_id] = delta.upto
        more = not delta.complete
        for row, folder in delta.upserts:
            envelope = listings.envelope_of_row(row, mailbox.public_id, folder)
            found.append({"op": "upsert", "message": envelope})
        for public_id in delta.deleted:
            gone = {"id": public_id, "mailbox_id": mailbox.public_id}
            found.append({"op": "delete", "message": gone})
        if delta.upserts:  # envelopes (patient, subject) were handed out: traced like a listing
            also(
                "mailbox.sync",
                target_type="mailbox",
                target=mailbox.public_id,
                mailbox=mailbox.public_id,
                upserts=len(delta.upserts),
                deletes=len(delta.deleted),
            )
        budget -= len(delta.upserts) + len(delta.deleted)
    note(target=g.user.public_id, mailboxes=len(visible), changes=len(found), more=more)
    answer = {
        "state": encode_state(g.user.public_id, positions),
        "changes": found,
        "more": more,
        "removed_mailboxes": sorted(set(known) - set(positions)),
    }
    return json_response(_dump_sync(answer))
