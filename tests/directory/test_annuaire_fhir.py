"""The Annuaire Santé FHIR API client: paging, retries with backoff, failures, cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.config import load_settings
from backend.directory.annuaire import AnnuaireClient, AnnuaireUnavailable
from backend.directory.extraction import Entry
from backend.outgoing.sending import check_directory
from devtools.annuaire_server import AnnuaireServer
from tests.directory.support import extraction, import_file

HELENE = Entry(
    kind="PER",
    address="new.colleague@chu-test.mssante.fr",
    national_id="810012345678",
    last_name="Lefèvre",
    first_name="Hélène",
    organisation="CHU de Test",
)
SECRETARIAT = Entry(
    kind="ORG", address="secretariat.neuro@chu-test.mssante.fr", organisation="Neurologie"
)


@pytest.fixture
def annuaire() -> Iterator[AnnuaireServer]:
    server = AnnuaireServer(page_size=2).start()
    server.publish([HELENE, SECRETARIAT])
    server.publish(
        Entry(kind="PER", address=f"dr.{n}@ch-x.mssante.fr", last_name=f"N{n}", first_name="A")
        for n in range(5)
    )
    yield server
    server.stop()


def _client(server: AnnuaireServer, tmp_path: Path, **options) -> AnnuaireClient:
    settings = load_settings(
        {
            "ESTAFETTE_CA_BUNDLE": "system",
            "ESTAFETTE_NIL": "test",
            "ESTAFETTE_VAR_DIR": str(tmp_path / "var"),
            "ESTAFETTE_ANNUAIRE_FHIR_URL": server.base_url,
            "ESTAFETTE_ANNUAIRE_API_KEY": server.api_key,
        }
    )
    return AnnuaireClient(settings, backoff_seconds=0.01, **options)


@pytest.mark.unit
def test_a_search_follows_the_next_links_to_the_last_page(annuaire, tmp_path) -> None:
    practitioners = _client(annuaire, tmp_path).search("Practitioner", {})

    assert len(practitioners) == 6  # Hélène and five others, two a page
    assert sum("_offset" in r for r in annuaire.requests) == 2


@pytest.mark.unit
def test_one_address_gives_its_holder_name_national_id_and_type(annuaire, tmp_path) -> None:
    client = _client(annuaire, tmp_path)

    person = client.holder_of("New.Colleague@chu-test.mssante.fr")
    service = client.holder_of(SECRETARIAT.address)

    assert (person.kind, person.name, person.national_id) == (
        "PER",
        "Hélène Lefèvre",
        "810012345678",
    )
    assert person.organisation == "CHU de Test"
    assert (service.kind, service.name) == ("ORG", "Neurologie")
    assert client.holder_of("nobody@chu-test.mssante.fr") is None


@pytest.mark.unit
def test_the_api_key_travels_in_the_esante_header(annuaire, tmp_path) -> None:
    client = _client(annuaire, tmp_path)
    annuaire.api_key = "another key"

    with pytest.raises(AnnuaireUnavailable, match="401"):
        client.search("Practitioner", {})


@pytest.mark.unit
def test_429_and_5xx_are_retried_and_the_answer_still_comes(annuaire, tmp_path) -> None:
    annuaire.fail(429, retry_after=1)
    annuaire.fail(503)
    annuaire.fail(502)

    holder = _client(annuaire, tmp_path).holder_of(HELENE.address)

    assert holder is not None and holder.name == "Hélène Lefèvre"
    assert len(annuaire.requests) == 4


@pytest.mark.unit
def test_an_api_that_keeps_failing_is_reported_after_the_last_attempt(annuaire, tmp_path) -> None:
    annuaire.fail(500, times=10)

    with pytest.raises(AnnuaireUnavailable, match="500"):
        _client(annuaire, tmp_path, attempts=3).holder_of(HELENE.address)
    assert len(annuaire.requests) == 3


@pytest.mark.unit
def test_a_slow_answer_times_out_and_is_retried(annuaire, tmp_path) -> None:
    annuaire.slow(1.5)

    holder = _client(annuaire, tmp_path, timeout=0.5).holder_of(HELENE.address)

    assert holder is not None
    assert len(annuaire.requests) >= 2


@pytest.mark.unit
def test_answers_are_cached(annuaire, tmp_path) -> None:
    client = _client(annuaire, tmp_path)
    client.holder_of(HELENE.address)
    asked = len(annuaire.requests)

    client.holder_of(HELENE.address)
    client.holder_of("NEW.colleague@chu-test.mssante.fr")

    assert len(annuaire.requests) == asked


def test_sending_asks_the_api_about_addresses_the_file_lacks(make_app, annuaire, tmp_path) -> None:
    app = make_app(
        ESTAFETTE_ANNUAIRE_FHIR_URL=annuaire.base_url,
        ESTAFETTE_ANNUAIRE_API_KEY=annuaire.api_key,
    )
    assert import_file(app, extraction(tmp_path, 5)).exit_code == 0
    services = app.extensions["estafette"]
    fields = {"to": (HELENE.address, "unknown@chu-test.mssante.fr"), "cc": (), "bcc": ()}

    with services.sessions() as db:
        warnings = check_directory(db, services.settings, fields)

    assert warnings == (
        {
            "code": "recipient_not_in_directory",
            "field": "to",
            "address": "unknown@chu-test.mssante.fr",
        },
    )


def test_an_unreachable_api_leaves_the_warning(make_app, annuaire, tmp_path) -> None:
    app = make_app(
        ESTAFETTE_ANNUAIRE_FHIR_URL=annuaire.base_url,
        ESTAFETTE_ANNUAIRE_API_KEY="not the key",
    )
    assert import_file(app, extraction(tmp_path, 5)).exit_code == 0
    services = app.extensions["estafette"]

    with services.sessions() as db:
        warnings = check_directory(
            db, services.settings, {"to": (HELENE.address,), "cc": (), "bcc": ()}
        )

    assert [w["address"] for w in warnings] == [HELENE.address]
