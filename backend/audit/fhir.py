"""FHIR R4 `AuditEvent` export: the format health-record systems and IHE ATNA tooling read.

One AuditEvent per trail record, in a `collection` Bundle. The resource carries the same
opaque ids as the trail (never content). The record's chain hash travels as an entity
detail, so an importer can match each event to the verified trail.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from backend.audit.search import details_of
from backend.storage.models import AuditRecord, utcnow

DICOM = "http://dicom.nema.org/resources/ontology/DCM"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
ACTION_SYSTEM = "urn:estafette:audit-action"
ID_SYSTEM = "urn:estafette:id"
# Stable entry UUIDs: the same record always exports under the same fullUrl.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:estafette:audit-record")

# (DICOM event type, display) by the first part of our action name.
_EVENT_TYPES = {
    "auth": ("110114", "User Authentication"),
    "session": ("110114", "User Authentication"),
    "message": ("110110", "Patient Record"),
    "attachment": ("110110", "Patient Record"),
    "mailbox": ("110112", "Query"),
    "sync": ("110112", "Query"),
    "device": ("110113", "Security Alert"),
    "admin": ("110113", "Security Alert"),
    "audit": ("110101", "Audit Log Used"),
}
_APPLICATION_ACTIVITY = ("110100", "Application Activity")

# FHIR action codes: Create, Read, Update, Delete, Execute.
_ACTION_BY_VERB = {
    "create": "C",
    "send": "C",
    "grant": "C",
    "read": "R",
    "download": "R",
    "list": "R",
    "search": "R",
    "export": "R",
    "verify": "R",
    "certificates": "R",
    "update": "U",
    "flag": "U",
    "disable": "U",
    "enable": "U",
    "reset_password": "U",
    "reset_otp": "U",
    "push_token": "U",
    "delete": "D",
    "revoke": "D",
    "purge": "D",
}

# FHIR outcome codes: 0 success, 4 minor failure, 8 serious failure, 12 major failure.
# The API's vocabulary is ok / refused / not_found / failed (mobile_api/auditing.py); the
# others are kept for records written before it.
_OUTCOME = {
    "ok": "0",
    "refused": "4",
    "not_found": "4",
    "failed": "8",
    "locked": "4",
    "partial": "4",
    "unavailable": "8",
    "error": "8",
}


def _verb(action: str) -> str:
    tail = action.split(".", 1)[-1]
    for verb in sorted(_ACTION_BY_VERB, key=len, reverse=True):
        if tail == verb or tail.endswith("_" + verb) or tail.startswith(verb):
            return _ACTION_BY_VERB[verb]
    return "E"


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _identified(kind: str, value: str) -> dict[str, Any]:
    return {"identifier": {"system": f"{ID_SYSTEM}:{kind}", "value": value}}


def audit_event(record: AuditRecord, *, site: str = "estafette") -> dict[str, Any]:
    """One trail record as an R4 AuditEvent (type, recorded, agent, source are required)."""
    code, display = _EVENT_TYPES.get(record.action.split(".", 1)[0], _APPLICATION_ACTIVITY)
    agent: dict[str, Any] = {
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                    "code": "humanuser" if record.actor.startswith("usr_") else "dataprocessor",
                }
            ]
        },
        "who": _identified("user", record.actor),
        "requestor": True,
    }
    if record.source_ip:
        agent["network"] = {"address": record.source_ip, "type": "2"}  # 2 = IP address
    agents = [agent]
    if record.device:
        agents.append({"who": _identified("device", record.device), "requestor": False})
    entities: list[dict[str, Any]] = []
    if record.target:
        entities.append(
            {
                "what": _identified(record.target_type or "object", record.target),
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            }
        )
    if record.mailbox and record.mailbox != record.target:
        entities.append(
            {
                "what": _identified("mailbox", record.mailbox),
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            }
        )
    details = [
        {"type": key, "valueString": str(value)} for key, value in details_of(record).items()
    ]
    entities.append(
        {
            "what": _identified("audit-record", str(record.id)),
            "type": {"system": ENTITY_TYPE, "code": "4", "display": "Other"},
            "detail": [
                {"type": "chain-hash", "valueString": record.hash},
                {"type": "previous-hash", "valueString": record.prev_hash},
                *details,
            ],
        }
    )
    return {
        "resourceType": "AuditEvent",
        "id": f"audit-{record.id}",
        "type": {"system": DICOM, "code": code, "display": display},
        "subtype": [{"system": ACTION_SYSTEM, "code": record.action}],
        "action": _verb(record.action),
        "recorded": _instant(record.occurred_at),
        "outcome": _OUTCOME.get(record.outcome, "8"),
        "agent": agents,
        "source": {
            "site": site,
            "observer": {"display": f"Estafette gateway ({site})"},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": entities,
    }


def bundle(
    records: Iterable[AuditRecord], *, site: str = "estafette", next_url: str | None = None
) -> dict[str, Any]:
    """A `collection` Bundle of AuditEvents; `next_url` adds the paging link.

    No `total`: FHIR allows it only on search and history bundles (bdl-1).
    """
    entries = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid5(_NAMESPACE, str(r.id))}",
            "resource": audit_event(r, site=site),
        }
        for r in records
    ]
    result: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": _instant(utcnow()),
        "entry": entries,
    }
    if next_url:
        result["link"] = [{"relation": "next", "url": next_url}]
    return result
