"""FHIR R4 export: a `collection` Bundle of AuditEvents with every element R4 requires.

The check below is written from the R4 (4.0.1) AuditEvent definition:
type 1..1 Coding · recorded 1..1 instant · agent 1..* (requestor 1..1 boolean) ·
source 1..1 (observer 1..1 Reference) · action 0..1 code C|R|U|D|E · outcome 0..1 code
0|4|8|12 · entity 0..* (sev-1: name and query not both).
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

from backend.audit.trail import Actor
from tests.support import body

INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _is_coding(value: object) -> bool:
    return isinstance(value, dict) and bool(value.get("code")) and bool(value.get("system"))


def _is_reference(value: object) -> bool:
    return isinstance(value, dict) and any(
        k in value for k in ("reference", "identifier", "display")
    )


def r4_audit_event_problems(resource: dict) -> list[str]:
    """Every way `resource` breaks the R4 AuditEvent cardinalities and bindings checked here."""
    problems = []
    if resource.get("resourceType") != "AuditEvent":
        problems.append("resourceType")
    if not _is_coding(resource.get("type")):
        problems.append("type must be one Coding")
    if not INSTANT.match(str(resource.get("recorded", ""))):
        problems.append("recorded must be an instant with a zone")
    if "action" in resource and resource["action"] not in {"C", "R", "U", "D", "E"}:
        problems.append("action")
    if "outcome" in resource and resource["outcome"] not in {"0", "4", "8", "12"}:
        problems.append("outcome")
    agents = resource.get("agent")
    if not isinstance(agents, list) or not agents:
        problems.append("agent 1..*")
    for agent in agents or []:
        if not isinstance(agent.get("requestor"), bool):
            problems.append("agent.requestor 1..1 boolean")
        if "who" in agent and not _is_reference(agent["who"]):
            problems.append("agent.who Reference")
        if "network" in agent and agent["network"].get("type") not in {"1", "2", "3", "4", "5"}:
            problems.append("agent.network.type")
    source = resource.get("source")
    if not isinstance(source, dict) or not _is_reference(source.get("observer")):
        problems.append("source.observer 1..1 Reference")
    for coding in (source or {}).get("type", []):
        if not _is_coding(coding):
            problems.append("source.type Coding")
    for entity in resource.get("entity", []):
        if "name" in entity and "query" in entity:
            problems.append("sev-1")
        if "what" in entity and not _is_reference(entity["what"]):
            problems.append("entity.what Reference")
        if "type" in entity and not _is_coding(entity["type"]):
            problems.append("entity.type Coding")
        for detail in entity.get("detail", []):
            if not isinstance(detail.get("type"), str) or not (
                "valueString" in detail or "valueBase64Binary" in detail
            ):
                problems.append("entity.detail type and value[x]")
    return problems


def _seed(services) -> None:
    reader = Actor("usr_reader", "dev_phone", "10.1.2.3")
    services.audit.record(
        "message.read", actor=reader, target_type="message", target="msg_1", mailbox="mbx_cardio"
    )
    services.audit.record(
        "auth.login",
        actor=Actor("usr_reader"),
        outcome="refused",
        details={"reason": "invalid_credentials"},
    )
    services.audit.record(
        "admin.mailbox_update",
        actor=reader,
        target_type="mailbox",
        target="mbx_cardio",
        mailbox="mbx_cardio",
        details={"before.imap.port": 993, "after.imap.port": 143},
    )


def test_the_export_is_a_collection_of_valid_r4_audit_events(client, services, admin) -> None:
    _seed(services)
    response = client.get("/api/v1/admin/audit/export", headers=admin.headers)
    assert response.status_code == 200
    assert response.mimetype == "application/fhir+json"
    bundle = json.loads(response.get_data(as_text=True))
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    assert "total" not in bundle  # bdl-1: only search and history bundles carry a total
    resources = [entry["resource"] for entry in bundle["entry"]]
    assert all(entry["fullUrl"].startswith("urn:uuid:") for entry in bundle["entry"])
    for resource in resources:
        assert r4_audit_event_problems(resource) == [], resource

    by_action = {
        r["subtype"][0]["code"]: r
        for r in resources
        if r["agent"][0]["who"]["identifier"]["value"] == "usr_reader"
    }
    read = by_action["message.read"]
    assert read["action"] == "R" and read["outcome"] == "0"
    assert read["type"]["code"] == "110110"  # DICOM "Patient Record"
    assert read["agent"][0]["who"]["identifier"]["value"] == "usr_reader"
    assert read["agent"][0]["network"] == {"address": "10.1.2.3", "type": "2"}
    assert read["agent"][1]["who"]["identifier"]["value"] == "dev_phone"
    targets = [e["what"]["identifier"]["value"] for e in read["entity"]]
    assert targets[:2] == ["msg_1", "mbx_cardio"]
    refused = by_action["auth.login"]
    assert (refused["type"]["code"], refused["outcome"]) == ("110114", "4")
    update = by_action["admin.mailbox_update"]
    assert update["action"] == "U"
    details = {d["type"]: d["valueString"] for d in update["entity"][-1]["detail"]}
    assert details["before.imap.port"] == "993" and len(details["chain-hash"]) == 64


def test_the_export_filters_and_pages_like_the_search(client, services, admin) -> None:
    _seed(services)
    params = {"actor": "usr_reader", "limit": 2}
    first = body(
        client.get(f"/api/v1/admin/audit/export?{urlencode(params)}", headers=admin.headers)
    )
    assert len(first["entry"]) == 2
    [link] = first["link"]
    assert link["relation"] == "next"
    second = body(client.get(link["url"], headers=admin.headers))
    assert len(second["entry"]) == 1 and "link" not in second


def test_the_command_line_exports_a_bundle_to_a_file(app, services, tmp_path) -> None:
    _seed(services)
    target = tmp_path / "audit.json"
    result = app.test_cli_runner().invoke(
        args=["audit", "export", "--action", "message.*", "--output", str(target)]
    )
    assert result.exit_code == 0, result.output
    bundle = json.loads(target.read_text())
    [entry] = bundle["entry"]
    assert r4_audit_event_problems(entry["resource"]) == []
