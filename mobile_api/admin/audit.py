"""Admin: search, verify and export the traceability trail. There is no route that edits
or deletes records: retention purges run from the operator command line only."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from flask import Response, json, request
from flask_smorest import Blueprint

from backend.audit import fhir
from backend.audit.search import AuditQuery, details_of, search
from backend.audit.trail import verify_chain
from backend.storage.models import AuditRecord
from mobile_api.admin import audit_admin, schemas
from mobile_api.auth.tokens import admin_required
from mobile_api.context import db
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
    return {
        "id": record.id,
        "occurred_at": record.occurred_at,
        "actor": record.actor,
        "device": record.device,
        "action": record.action,
        "outcome": record.outcome,
        "target_type": record.target_type,
        "target": record.target,
        "mailbox": record.mailbox,
        "source_ip": record.source_ip,
        "details": details_of(record),
        "hash": record.hash,
        "prev_hash": record.prev_hash,
    }


def _filters(args: dict) -> dict:
    """The search filters for the audit record of the search itself (ids and times only)."""
    return {
        key: (value.isoformat() if isinstance(value, datetime) else value)
        for key, value in args.items()
        if key in ("actor", "action", "mailbox", "since", "until") and value is not None
    }


@blp.get("")
@admin_required
@blp.arguments(schemas.AuditArgsSchema, location="query")
@blp.response(200, schemas.AuditPageSchema)
def search_trail(args: dict) -> dict:
    """Records by actor, action (`admin.*` for a prefix), mailbox and time, newest first."""
    rows, cursor = _page(args)
    audit_admin("audit.search", target_type="audit", details=_filters(args) or None)
    return {"items": [_record_view(r) for r in rows], "next": cursor}


@blp.get("/verify")
@admin_required
@blp.response(200, schemas.VerifySchema)
def verify() -> dict:
    """Recompute the hash chain from the anchor; name the first record that breaks it."""
    result = verify_chain(db())
    audit_admin(
        "audit.verify",
        target_type="audit",
        details={"ok": result.ok, "records": result.records, "first_bad": result.first_bad},
    )
    return {
        "ok": result.ok,
        "records": result.records,
        "first_bad": result.first_bad,
        "reason": result.reason,
    }


@blp.get("/export")
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
    audit_admin(
        "audit.export", target_type="audit", details={**_filters(args), "records": len(rows)}
    )
    body = fhir.bundle(rows, site=request.host, next_url=next_url)
    return Response(json.dumps(body), mimetype=FHIR_JSON)
