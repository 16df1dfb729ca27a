"""A local stand-in for the Annuaire Santé FHIR API, for tests (there is no internet).

It serves FHIR R4 searchset Bundles of Practitioner, PractitionerRole and Organization
in the shapes of the ANS IG (ansforge/IG-fhir-annuaire): MSSanté mailboxes as `telecom`
of profile `as-mailbox-mss` (system `email`, the FR Core email-type extension coded
MSSANTE, and the `as-ext-mailbox-mss-metadata` extension with `type` PER | ORG | APP |
CAB), the `mailbox-mss` search parameter (exact telecom.value), `_count` paging with
`next` links, and `_include=PractitionerRole:practitioner`. Every resource and Bundle is
built through fhir.resources' models, so a shape the models refuse cannot be served.
It checks the `ESANTE-API-KEY` header and can fail on demand: any status (429 with
`Retry-After`, 5xx) or a slow answer, for the next N requests.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole

from backend.directory.annuaire import API_KEY_HEADER, MAILBOX_METADATA
from backend.directory.extraction import Entry

EMAIL_TYPE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"
EMAIL_TYPE_SYSTEM = (
    "https://mos.esante.gouv.fr/NOS/TRE_R256-TypeMessagerie/FHIR/TRE-R256-TypeMessagerie"
)
BAL_TYPE_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R257-TypeBAL/FHIR/TRE-R257-TypeBAL"
RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
FHIR_JSON = "application/fhir+json"


def mailbox_telecom(address: str, kind: str) -> dict[str, Any]:
    """A ContactPoint of profile as-mailbox-mss."""
    return {
        "system": "email",
        "value": address,
        "extension": [
            {"url": EMAIL_TYPE, "valueCoding": {"system": EMAIL_TYPE_SYSTEM, "code": "MSSANTE"}},
            {
                "url": MAILBOX_METADATA,
                "extension": [
                    {
                        "url": "type",
                        "valueCodeableConcept": {
                            "coding": [{"system": BAL_TYPE_SYSTEM, "code": kind}]
                        },
                    },
                    {"url": "digitization", "valueBoolean": True},
                ],
            },
        ],
    }


def resources_for(number: int, entry: Entry) -> list[Any]:
    """The directory's resources for one mailbox: a practitioner and their role, or an
    organisation."""
    telecom = mailbox_telecom(entry.address, entry.kind)
    if entry.kind != "PER":
        return [
            Organization.model_validate(
                {"id": f"org-{number}", "name": entry.organisation, "telecom": [telecom]}
            )
        ]
    person = Practitioner.model_validate(
        {
            "id": f"pp-{number}",
            "identifier": [
                {"system": RPPS_SYSTEM, "value": entry.national_id or f"8{number:010d}"}
            ],
            "name": [{"family": entry.last_name, "given": [entry.first_name or ""]}],
            "telecom": [telecom],
        }
    )
    role = PractitionerRole.model_validate(
        {
            "id": f"role-{number}",
            "practitioner": {"reference": f"Practitioner/{person.id}"},
            "organization": {"display": entry.organisation},
            "telecom": [telecom],
        }
    )
    return [person, role]


@dataclass
class _Failure:
    status: int | None  # None: a slow but good answer
    delay: float = 0.0
    retry_after: int | None = None


@dataclass
class AnnuaireServer:
    """`start()`, point ESTAFETTE_ANNUAIRE_FHIR_URL at `base_url`, `stop()`."""

    api_key: str = "test-esante-api-key"
    page_size: int = 2
    resources: list[Any] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    _failures: list[_Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def publish(self, entries: Iterable[Entry]) -> None:
        for number, entry in enumerate(entries, start=len(self.resources)):
            self.resources += resources_for(number, entry)

    def fail(self, status: int, times: int = 1, retry_after: int | None = None) -> None:
        with self._lock:
            self._failures += [_Failure(status, retry_after=retry_after) for _ in range(times)]

    def slow(self, seconds: float, times: int = 1) -> None:
        with self._lock:
            self._failures += [_Failure(None, delay=seconds) for _ in range(times)]

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}/fhir/v2"

    def start(self) -> AnnuaireServer:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_GET(self) -> None:
                stand_in._answer(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- the API --------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        if not urlsplit(handler.path).path.startswith("/fhir/v2/"):
            # Not the API: under xdist another test's readiness poll can reach a port this
            # stand-in was just given. It is refused and not counted among `requests`.
            return self._send(handler, 404, _outcome("not-found", "not the FHIR API"))
        self.requests.append(handler.path)
        if handler.headers.get(API_KEY_HEADER) != self.api_key:
            return self._send(handler, 401, _outcome("security", "ESANTE-API-KEY missing or wrong"))
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            time.sleep(failure.delay)
            if failure.status is not None:
                headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
                return self._send(
                    handler, failure.status, _outcome("transient", "try later"), headers
                )
        url = urlsplit(handler.path)
        resource_type = url.path.rsplit("/", 1)[-1]
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if resource_type not in ("Practitioner", "PractitionerRole", "Organization"):
            return self._send(handler, 404, _outcome("not-found", "unknown resource type"))
        self._send(handler, 200, self._searchset(resource_type, params))

    def _searchset(self, resource_type: str, params: dict[str, str]) -> str:
        address = params.get("mailbox-mss", "").lower()
        matches = [
            r
            for r in self.resources
            if r.get_resource_type() == resource_type
            and (not address or any((t.value or "").lower() == address for t in r.telecom or ()))
        ]
        count = int(params.get("_count", self.page_size))
        offset = int(params.get("_offset", 0))
        page = matches[offset : offset + count]
        entries = [
            {
                "fullUrl": f"{self.base_url}/{r.get_resource_type()}/{r.id}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in page
        ]
        if params.get("_include") == "PractitionerRole:practitioner":
            wanted = {r.practitioner.reference for r in page if r.practitioner}
            entries += [
                {
                    "fullUrl": f"{self.base_url}/Practitioner/{r.id}",
                    "resource": r,
                    "search": {"mode": "include"},
                }
                for r in self.resources
                if r.get_resource_type() == "Practitioner" and f"Practitioner/{r.id}" in wanted
            ]
        links = [{"relation": "self", "url": self._link(resource_type, params, offset)}]
        if offset + count < len(matches):
            links.append(
                {"relation": "next", "url": self._link(resource_type, params, offset + count)}
            )
        bundle = Bundle.model_validate(
            {"type": "searchset", "total": len(matches), "link": links, "entry": entries}
        )
        return bundle.model_dump_json()

    def _link(self, resource_type: str, params: dict[str, str], offset: int) -> str:
        query = {**params, "_offset": str(offset)}
        return f"{self.base_url}/{resource_type}?{urlencode(query)}"

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        payload: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = payload.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", FHIR_JSON)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)


def _outcome(code: str, text: str) -> str:
    return json.dumps(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}],
        }
    )
