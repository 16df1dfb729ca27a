"""`GET /api/v1/directory`: word prefixes, accents ignored, words ANDed, the closest first."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from backend.directory import search as directory_search
from backend.storage.models import DirectoryTerm, DirectoryWord
from tests.directory.support import extraction, import_file, own_mailbox, received_from, search
from tests.messages.support import audit_rows, audit_text
from tests.support import body


def _addresses(hits: list[dict]) -> list[str]:
    return [h["address"] for h in hits]


def test_a_prefix_without_accents_finds_the_accented_name(client, user, loaded) -> None:
    hits = search(client, user.headers, "helen")

    assert "helene.lefevre@chu-test.mssante.fr" in _addresses(hits)


def test_accents_typed_or_not_give_the_same_answer(client, user, loaded) -> None:
    assert search(client, user.headers, "Lefèv") == search(client, user.headers, "LEFEV")


def test_several_words_must_all_match(client, user, loaded) -> None:
    hits = search(client, user.headers, "jean-pierre card marseille")

    assert _addresses(hits) == ["jp.muller-lefevre@ch-emeraude.mssante.fr"]
    [hit] = hits
    assert hit["name"] == "Jean-Pierre Müller-Lefèvre"
    assert hit["kind"] == "PER"
    assert hit["profession"] == "Médecin"
    assert hit["specialty"] == "Cardiologie et maladies vasculaires"
    assert hit["organisation"] == "CH Côte d'Émeraude"
    assert hit["city"] == "MARSEILLE"


def test_apostrophes_and_hyphens_match_joined_or_apart(client, user, loaded) -> None:
    for typed in ("o'bri", "obrien", "brien", "d'alemb", "dalemb", "muller-lef", "lefevre mull"):
        assert search(client, user.headers, typed), f"nothing found for {typed!r}"
    assert "sean.obrien@medecin.mssante.fr" in _addresses(search(client, user.headers, "o'bri"))


def test_ligatures_are_found_by_their_letters(client, user, loaded) -> None:
    hits = search(client, user.headers, "loewenb coeur")

    assert _addresses(hits) == ["coeur.loewenbruck@chu-test.mssante.fr"]


def test_a_single_letter_answers_at_most_the_limit(client, user, loaded) -> None:
    hits = search(client, user.headers, "m", limit=7)

    assert len(hits) == 7
    assert len(set(_addresses(hits))) == 7


def test_organisational_mailboxes_are_found_by_service_and_are_org(client, user, loaded) -> None:
    hits = search(client, user.headers, "cardio saint eloi")

    assert [(h["address"], h["kind"]) for h in hits] == [
        ("secretariat.cardio@chu-test.mssante.fr", "ORG")
    ]


def test_the_start_of_an_address_finds_it(client, user, loaded) -> None:
    assert _addresses(search(client, user.headers, "Zoe.Dal")) == ["zoe.dalembert@pro.mssante.fr"]


def test_nothing_matches_gives_an_empty_list(client, user, loaded) -> None:
    assert search(client, user.headers, "zzzqxw") == []


def test_the_establishments_own_mailboxes_are_searchable(client, services, user, loaded) -> None:
    own_mailbox(
        services, "bloc.operatoire@chu-test.mssante.fr", kind="APP", display_name="Bloc opératoire"
    )

    hits = search(client, user.headers, "bloc opera")

    assert [(h["address"], h["kind"], h["rank"]) for h in hits] == [
        ("bloc.operatoire@chu-test.mssante.fr", "APP", "establishment")
    ]


def test_recent_correspondents_come_first_then_the_establishment(
    client, services, user, loaded
) -> None:
    # Three Lefèvre-like matches: one elsewhere, one in our domain, one we wrote to.
    own_mailbox(services, "moi@chu-test.mssante.fr", owner=user.username)
    received_from(services, user.username, "jp.muller-lefevre@ch-emeraude.mssante.fr")

    hits = search(client, user.headers, "lefevre")

    assert [(h["address"], h["rank"]) for h in hits][:2] == [
        ("jp.muller-lefevre@ch-emeraude.mssante.fr", "correspondent"),
        ("helene.lefevre@chu-test.mssante.fr", "establishment"),
    ]


def test_every_search_is_audited_with_its_hit_count_and_never_the_query(
    client, services, user, loaded
) -> None:
    canary = "Lefèvre"
    hits = search(client, user.headers, canary)

    [record] = audit_rows(services, "directory.search")
    assert record.actor == user.user_id
    assert record.outcome == "ok"
    assert f'"hits":{len(hits)}' in record.details
    trail = audit_text(services).lower()
    for leaked in ("lefèvre", "lefevre", "lefev"):
        assert leaked not in trail


def test_an_empty_or_too_long_query_is_a_validation_error(client, user) -> None:
    for q in ("", "x" * 201):
        response = client.get("/api/v1/directory", query_string={"q": q}, headers=user.headers)
        assert response.status_code == 422
        assert body(response)["code"] == "validation_error"


def test_searching_needs_a_session(client, loaded) -> None:
    response = client.get("/api/v1/directory", query_string={"q": "martin"})

    assert response.status_code == 401


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_several_words_give_the_same_answer_whichever_plan_finds_it(
    app, client, services, user, tmp_path, monkeypatch
) -> None:
    """PostgreSQL answers several words by the driving word's scan, by probing the words'
    key for the others (index only), or from the GIN index of the entries' words (the
    rare side), whichever costs least: the answer (hits, tiers, order) is one."""
    import_file(app, extraction(tmp_path, 3000))
    own_mailbox(services, "moi@chu-test.mssante.fr", owner=user.username)
    received_from(services, user.username, "jp.muller-lefevre@ch-emeraude.mssante.fr")
    typed = [
        "thomas henry",  # two common names, rare together
        "anne nicolas",
        "jean dupont",
        "dupont jean",  # the probe reads the rarer whole word, in the same order
        "jean-pierre lef",
        "lefevre helene chu",
        "jean d",  # a prefix of a thousand words: a filter, never looked up in the index
        "mar lyo",  # many hits, ordered by the word "mar" starts (marc, marie, martin...)
        "ma lyo",
        "medecin paris",
        "cardio marseille",
        "martin zzzqxw",  # a word nobody has
    ]
    answers: dict[str, dict[str, list]] = {}
    for plan in ("scan", "probe", "index"):
        possible = {
            "scan": lambda typed: True,
            "probe": directory_search._can_probe,
            "index": directory_search._can_use_index,
        }[plan]
        monkeypatch.setattr(
            directory_search,
            "_plan",
            lambda total, words, _, plan=plan, possible=possible: (
                plan if possible(words) else "scan"
            ),
        )
        answers[plan] = {
            q: [search(client, user.headers, q, limit=n) for n in (1, 5)] for q in typed
        }

    assert answers["probe"] == answers["scan"]
    assert answers["index"] == answers["scan"]
    by_scan = answers["scan"]
    assert by_scan["thomas henry"][1] and by_scan["jean d"][1] and not by_scan["martin zzzqxw"][1]
    assert {h["rank"] for h in by_scan["lefevre helene chu"][1]} == {"establishment"}


def test_the_cheapest_plan_is_taken_for_each_kind_of_full_name() -> None:
    """The cost model's choices on the 600,000-entry bench directory's counts."""
    typed = directory_search._Typed
    total = 600_000
    # "jean dupont": a common first name, a rarer last name: the last name is read.
    assert (
        directory_search._plan(total, [typed(("dupont",), 8000), typed(("jean",), 160000)], 25)
        == "probe"
    )
    # "marc denis": two single words, rare together: the rarer is read, the other probed.
    assert (
        directory_search._plan(total, [typed(("denis",), 57505), typed(("marc",), 13399)], 25)
        == "probe"
    )
    # "anne nicolas": rarer still together (both first names): from the GIN index.
    assert (
        directory_search._plan(total, [typed(("nicolas",), 21186), typed(("anne",), 13345)], 25)
        == "index"
    )
    # a word too common to look up ("d") can only filter: never the probe.
    assert (
        directory_search._plan(total, [typed(("martin",), 16384), typed(None, 90000)], 25)
        != "probe"
    )


def test_the_words_table_counts_each_words_entries(app, services, tmp_path) -> None:
    import_file(app, extraction(tmp_path, 300))

    with services.sessions() as db:
        counted = dict(db.execute(select(DirectoryWord.term, DirectoryWord.entries)).all())
        expected = dict(
            db.execute(select(DirectoryTerm.term, func.count()).group_by(DirectoryTerm.term)).all()
        )
    assert counted == expected
    assert counted["lefevre"] == 2  # Hélène Lefèvre and Jean-Pierre Müller-Lefèvre
