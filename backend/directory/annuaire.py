"""The Annuaire Santé FHIR API: the freshest answer about one MSSanté address.

The daily extraction is a day old; this API knows a mailbox created this morning. We ask
it only about single addresses (a recipient the local index does not know), with the
establishment's key in the `ESANTE-API-KEY` header. Resources follow the ANS's FHIR IG
(ansforge/IG-fhir-annuaire, FHIR R4): Practitioner, PractitionerRole and Organization
carry MSSanté mailboxes as `telecom` entries of profile `as-mailbox-mss` (system
`email`, with the `as-ext-mailbox-mss-metadata` extension whose `type` is PER, ORG, APP
or CAB), found with the `mailbox-mss` search parameter (exact match on telecom.value).

Bundles are parsed and validated with fhir.resources (its R4B models: R4-compatible for
these resources), never by hand. Search results are followed through their `next` links.
429 and 5xx answers and transport errors are retried with exponential backoff by
tenacity, honouring `Retry-After`; answers are cached for a few minutes.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole
from pydantic import ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from backend.config import Settings
from backend.directory.outbound import outbound_client

log = logging.getLogger("estafette.directory")

MAILBOX_METADATA = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-mailbox-mss-metadata"
API_KEY_HEADER = "ESANTE-API-KEY"
MAX_PAGES = 20
_RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})
_MAX_RETRY_AFTER = 30.0


class AnnuaireUnavailable(RuntimeError):
    """The API could not answer (after retries), or answered something not FHIR."""


@dataclass(frozen=True)
class MailboxHolder:
    """What the API says about one MSSanté address."""

    address: str
    kind: str | None
    name: str | None = None
    national_id: str | None = None
    organisation: str | None = None


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _RetryableStatus | httpx.TransportError)


def _wait(base: float) -> Any:
    backoff = wait_exponential_jitter(multiplier=base, max=10.0, jitter=base)

    def wait(state: RetryCallState) -> float:
        """Retry-After (RFC 9110 §10.2.3, seconds form) when the server gives one."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableStatus):
            value = exc.response.headers.get("Retry-After", "")
            if value.isdigit():
                return min(float(value), _MAX_RETRY_AFTER)
        return backoff(state)

    return wait


class _TTLCache:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> tuple[bool, Any]:
        with self._lock:
            item = self._items.get(key)
            if item is None or time.monotonic() - item[0] > self.seconds:
                return False, None
            return True, item[1]

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            if len(self._items) > 10_000:
                self._items.clear()
            self._items[key] = (time.monotonic(), value)


class AnnuaireClient:
    """One API base and key; thread-safe; one instance per process is enough."""

    def __init__(
        self,
        settings: Settings,
        *,
        attempts: int = 4,
        backoff_seconds: float = 0.5,
        timeout: float = 10.0,
        cache_seconds: float = 300.0,
    ) -> None:
        if not settings.annuaire_api_key:
            raise AnnuaireUnavailable("ESTAFETTE_ANNUAIRE_API_KEY is not set")
        self.base = settings.annuaire_fhir_url.rstrip("/")
        self._http = outbound_client(
            settings,
            timeout=timeout,
            headers={API_KEY_HEADER: settings.annuaire_api_key, "Accept": "application/fhir+json"},
        )
        self._retrying = Retrying(
            retry=retry_if_exception(_retryable),
            wait=_wait(backoff_seconds),
            stop=stop_after_attempt(attempts),
            reraise=True,
        )
        self._cache = _TTLCache(cache_seconds)

    def close(self) -> None:
        self._http.close()

    def _get_bundle(self, url: str, params: dict[str, str] | None) -> Bundle:
        def attempt() -> httpx.Response:
            response = self._http.get(url, params=params)
            if response.status_code in _RETRIED_STATUS:
                raise _RetryableStatus(response)
            return response

        try:
            response = self._retrying(attempt)
        except _RetryableStatus as exc:
            raise AnnuaireUnavailable(f"the Annuaire Santé answered {exc}") from exc
        except httpx.HTTPError as exc:
            raise AnnuaireUnavailable(f"the Annuaire Santé is unreachable: {exc!r}") from exc
        if response.status_code != 200:
            raise AnnuaireUnavailable(f"the Annuaire Santé answered HTTP {response.status_code}")
        try:
            return Bundle.model_validate_json(response.content)
        except ValidationError as exc:
            raise AnnuaireUnavailable("the Annuaire Santé answered something not a Bundle") from exc

    def search(self, resource_type: str, params: dict[str, str]) -> list[Any]:
        """Every resource of a search, page after page through the Bundle's `next` links."""
        found: list[Any] = []
        url: str | None = f"{self.base}/{resource_type}"
        query: dict[str, str] | None = params
        for _page in range(MAX_PAGES):
            bundle = self._get_bundle(url, query)
            found += [e.resource for e in bundle.entry or () if e.resource is not None]
            url = next((link.url for link in bundle.link or () if link.relation == "next"), None)
            if url is None:
                return found
            query = None  # the next link carries the whole query
        log.warning("Annuaire Santé search cut after %d pages", MAX_PAGES)
        return found

    def holder_of(self, address: str) -> MailboxHolder | None:
        """Who holds this MSSanté address, per the API now; None if nobody (cached)."""
        address = address.strip().lower()
        hit, cached = self._cache.get(address)
        if hit:
            return cached
        holder = self._practitioner_holder(address) or self._organisation_holder(address)
        self._cache.put(address, holder)
        return holder

    def _practitioner_holder(self, address: str) -> MailboxHolder | None:
        resources = self.search(
            "PractitionerRole",
            {"mailbox-mss": address, "_include": "PractitionerRole:practitioner"},
        )
        roles = [r for r in resources if isinstance(r, PractitionerRole)]
        people = {f"Practitioner/{r.id}": r for r in resources if isinstance(r, Practitioner)}
        for role in roles:
            kind = _mailbox_kind(role.telecom, address)
            if kind is None:
                continue
            person = people.get(role.practitioner.reference if role.practitioner else "")
            organisation = role.organization.display if role.organization else None
            return MailboxHolder(address, kind, *_person(person), organisation=organisation)
        for person in self.search("Practitioner", {"mailbox-mss": address}):
            if isinstance(person, Practitioner) and (
                kind := _mailbox_kind(person.telecom, address)
            ):
                return MailboxHolder(address, kind, *_person(person))
        return None

    def _organisation_holder(self, address: str) -> MailboxHolder | None:
        for organisation in self.search("Organization", {"mailbox-mss": address}):
            if isinstance(organisation, Organization):
                kind = _mailbox_kind(organisation.telecom, address)
                if kind is not None:
                    return MailboxHolder(
                        address, kind, organisation.name, organisation=organisation.name
                    )
        return None


def _mailbox_kind(telecoms: list[Any] | None, address: str) -> str | None:
    """The MSSanté type of the telecom holding `address` ("PER" if it names none)."""
    for telecom in telecoms or ():
        if telecom.system != "email" or (telecom.value or "").lower() != address:
            continue
        for extension in telecom.extension or ():
            if extension.url != MAILBOX_METADATA:
                continue
            for part in extension.extension or ():
                if part.url == "type" and part.valueCodeableConcept is not None:
                    codes = [c.code for c in part.valueCodeableConcept.coding or () if c.code]
                    if codes:
                        return codes[0]
        return "PER"
    return None


def _person(person: Practitioner | None) -> tuple[str | None, str | None]:
    if person is None:
        return None, None
    name = None
    if person.name:
        first = person.name[0]
        name = " ".join([*(first.given or ()), first.family or ""]).strip() or None
    national_id = next((i.value for i in person.identifier or () if i.value), None)
    return name, national_id


_clients: dict[tuple[str, str], AnnuaireClient] = {}
_clients_lock = threading.Lock()


def client_for(settings: Settings) -> AnnuaireClient | None:
    """This process's client for the configured API, or None without an API key."""
    if not settings.annuaire_api_key:
        return None
    key = (settings.annuaire_fhir_url, settings.annuaire_api_key)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = AnnuaireClient(settings)
        return _clients[key]


def confirmed_by_api(settings: Settings, addresses: list[str], at_most: int = 5) -> set[str]:
    """Those of `addresses` the API knows now (the file may be a day behind). An API that
    cannot answer confirms nobody: the caller keeps its warning."""
    client = client_for(settings)
    if client is None:
        return set()
    confirmed = set()
    for address in addresses[:at_most]:
        try:
            if client.holder_of(address) is not None:
                confirmed.add(address)
        except AnnuaireUnavailable as exc:
            log.warning("Annuaire Santé look-up failed: %s", exc)
            break
    return confirmed
