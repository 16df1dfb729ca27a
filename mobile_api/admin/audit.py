"""Admin: search, verify and export the traceability trail. There is no route that edits
or deletes records: retention purges run from the operator command line only."""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import datetime
from urllib.parse import urlencode

from flask import Response, json, request
from flask_smorest import Blueprint

from backend.audit import fhir
from backend.audit.anchoring import CheckpointVerdict, public_key_of, verify_checkpoints
from backend.audit.checkpoints import read_checkpoints
from backend.audit.search import AuditQuery, details_of, search
from backend.audit.trail import record_fields, verify_chain
from backend.storage.models import AuditRecord
from mobile_api.admin import schemas
from mobile_api.auditing import audited, note
from mobile_api.auth.tokens import admin_required
from mobile_api.context import db, services
from mobile_api.pagination import decode_cursor, encode_cursor

blp = Blueprint(
    "admin_audit", __name__, url_prefix="/api/v1/admin/audit", description="Admin: audit trail"
)

FHIR_JSON = "application/fhir+json"


def _query(args: dict) -> AuditQuery:
    return AuditQuery(
        actor=args["actor"],
        action=args["action"],
        mailbox=args["mailbox"],
        since=args["since"],
        until=args["until"],
    )


def _page(args: dict) -> tuple[list, str | None]:
    after = decode_cursor(args["cursor"], 2)
    key = (datetime.fromisoformat(after[0]), int(after[1])) if after else None
    rows, next_key = search(db=db(), query=_query(args), limit=args["limit"], after=key)
    cursor = encode_cursor(next_key[0].isoformat(), next_key[1]) if next_key else None
    return rows, cursor


def _record_view(record: AuditRecord) -> dict:
    return {**record_fields(record), "details": details_of(record), "hash": record.hash}


# An id, or an action with its trailing `*`: any other filter text stays out of the trail.
_FILTER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\*?$")


def _filters(args: dict) -> dict:
    """The search filters for the audit record of the search itself (ids and times only)."""
    result: dict = {}
    for key in ("actor", "action", "mailbox", "since", "until"):
        value = args.get(key)
        if isinstance(value, datetime):
            result[key] = value.isoformat()
        elif value is not None:
            result[key] = value if _FILTER_ID.match(value) else "(not an id)"
    return result


@blp.get("")
@audited("audit.search", target_type="audit")
@admin_required
@blp.arguments(schemas.AuditArgsSchema, location="query")
@blp.response(200, schemas.AuditPageSchema)
def search_trail(args: dict) -> dict:
    """Records by actor, action (`admin.*` for a prefix), mailbox and time, newest first."""
    rows, cursor = _page(args)
    note(action="audit.search", target_type="audit", details=_filters(args) or None)
    return {"items": [_record_view(r) for r in rows], "next": cursor}


@blp.get("/verify")
@audited("audit.verify", target_type="audit")
@admin_required
@blp.response(200, schemas.VerifySchema)
def verify() -> dict:
    """Recompute the hash chain from the anchor, and the Merkle root at every signed
    checkpoint of this host's checkpoint file; `ok` only when both hold."""
    result = verify_chain(db())
    settings = services().settings
    try:
        checkpoints = read_checkpoints(settings.audit_checkpoint_file)
        anchored = verify_checkpoints(db(), checkpoints, public_key_of(settings))
    except ValueError as exc:
        anchored = CheckpointVerdict(False, 0, reason=f"checkpoint file unreadable: {exc}")
    ok = result.ok and anchored.ok
    note(
        action="audit.verify",
        target_type="audit",
        details={
            "ok": ok,
            "records": result.records,
            "first_bad": result.first_bad,
            "checkpoints": anchored.checked,
        },
    )
    return {
        "ok": ok,
        "records": result.records,
        "first_bad": result.first_bad,
        "reason": result.reason if not result.ok else anchored.reason,
        "checkpoints": asdict(anchored),
    }


@blp.get("/export")
@audited("audit.export", target_type="audit")
@admin_required
@blp.arguments(schemas.ExportArgsSchema, location="query")
@blp.response(200, description="A FHIR R4 Bundle (type collection) of AuditEvent resources")
def export(args: dict) -> Response:
    """The same filters as the search, as FHIR R4 AuditEvents (`link` next to page on)."""
    rows, cursor = _page(args)
    next_url = None
    if cursor:
        query = {k: v for k, v in request.args.items() if k != "cursor"}
        next_url = f"{request.base_url}?{urlencode({**query, 'cursor': cursor})}"
    note(
        action="audit.export", target_type="audit", details={**_filters(args), "records": len(rows)}
    )
    body = fhir.bundle(rows, site=request.host, next_url=next_url)
    return Response(json.dumps(body), mimetype=FHIR_JSON)
