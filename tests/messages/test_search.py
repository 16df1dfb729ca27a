"""Search: `GET /mailboxes/{id}/messages` with criteria, cross-checked with the server's SEARCH.

Real messages on Dovecot; every answer of the API is compared with what the desktop
client's IMAP SEARCH finds in the same folder.
"""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from backend.mail.imap import search_uids
from backend.mailboxes import search
from tests.messages.support import Inbox
from tests.support import body

MAIL = [
    # (subject, sender, body, attachment, extra headers)
    ("Kaliémie du 3 décembre", "Laboratoire Durand <labo.durand@chu-a.mssante.fr>",
     "Hyperkaliémie à 6,8 mmol/L.", False, {"Importance": "high"}),
    ("Compte rendu opératoire", "Dr Claire Martin <claire.martin@chu-b.mssante.fr>",
     "Cholécystectomie sans incident.", True, {}),
    ("Lettre de sortie", "Dr Paul Durand <paul.durand@chu-c.mssante.fr>",
     "Sortie à domicile, kinésithérapie.", True, {}),
    ("Résultats d'imagerie", "Radiologie <radio@chu-a.mssante.fr>",
     "Scanner thoracique normal.", False, {}),
    ("RCP oncologie", "Secrétariat RCP <rcp@chu-b.mssante.fr>",
     "Dossier présenté jeudi, voir compte rendu joint.", True, {}),
]  # fmt: skip


def _raw(subject: str, sender: str, text: str, attached: bool, extra: dict, to: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    for name, value in extra.items():
        message[name] = value
    message.set_content(text)
    if attached:
        message.add_attachment(
            b"%PDF-1.4", maintype="application", subtype="pdf", filename="cr.pdf"
        )
    return bytes(message)


@pytest.fixture
def filled(inbox: Inbox) -> Inbox:
    """Five messages; the desktop reads two and flags one."""
    for subject, sender, text, attached, extra in MAIL:
        inbox.dovecot.deliver(
            inbox.address, _raw(subject, sender, text, attached, extra, inbox.address)
        )
    with inbox.desktop() as desktop:
        desktop.select_folder("INBOX")
        by_subject = _server_subjects(desktop, desktop.search(["ALL"]))
        uid_of = {subject: uid for uid, subject in by_subject.items()}
        desktop.add_flags([uid_of["Lettre de sortie"], uid_of["RCP oncologie"]], [b"\\Seen"])
        desktop.add_flags([uid_of["Compte rendu opératoire"]], [b"\\Flagged"])
    inbox.sync()
    return inbox


def _server_subjects(desktop: Any, uids: list[int]) -> dict[int, str]:
    if not uids:
        return {}
    fetched = desktop.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    return {
        uid: str(
            message_from_bytes(data[b"BODY[HEADER.FIELDS (SUBJECT)]"], policy=policy.default)[
                "Subject"
            ]
        )
        for uid, data in fetched.items()
    }


def _server(inbox: Inbox, *criteria: Any) -> set[str]:
    with inbox.desktop() as desktop:
        desktop.select_folder("INBOX", readonly=True)
        return set(
            _server_subjects(desktop, desktop.search(list(criteria), charset="UTF-8")).values()
        )


def _api(inbox: Inbox, **query: Any) -> set[str]:
    """Every page of the search, gathered; each page is newest first."""
    subjects: list[str] = []
    params: dict[str, Any] = {**query, "limit": query.get("limit", 2)}
    while True:
        response = inbox.http.get(
            f"/api/v1/mailboxes/{inbox.mailbox_id}/messages",
            headers=inbox.headers,
            query_string=params,
        )
        assert response.status_code == 200, body(response)
        page = body(response)
        dates = [item["date"] for item in page["items"]]
        assert dates == sorted(dates, reverse=True)
        subjects += [item["subject"] for item in page["items"]]
        if page["next"] is None:
            break
        params["cursor"] = page["next"]
    assert len(subjects) == len(set(subjects)), "a message came twice across pages"
    return set(subjects)


def test_search_by_sender_matches_the_servers_from(filled: Inbox) -> None:
    found = _api(filled, **{"from": "durand"})
    assert found == _server(filled, "FROM", "durand")
    assert found == {"Kaliémie du 3 décembre", "Lettre de sortie"}


def test_search_by_subject_words_ignores_case_and_accents(filled: Inbox) -> None:
    assert _api(filled, q="kaliemie") == _server(filled, "SUBJECT", "Kaliémie")
    assert _api(filled, q="COMPTE rendu") == {"Compte rendu opératoire"}


def test_full_text_search_reaches_the_bodies_through_the_server(filled: Inbox) -> None:
    found = _api(filled, text="compte rendu joint")
    assert found == _server(filled, "TEXT", "compte rendu joint") == {"RCP oncologie"}
    # Not in any subject or address: only the server's body search finds it.
    assert _api(filled, q="kinésithérapie") == set()
    assert _api(filled, text="kinésithérapie") == {"Lettre de sortie"}


@pytest.mark.parametrize(
    "criteria",
    [["TEXT", "rendu"], ["TEXT", "kinésithérapie"], ["ALL"], ["TEXT", "introuvable-xyz"]],
)
def test_an_esearch_answer_names_the_same_uids_as_a_plain_search(
    filled: Inbox, criteria: list[str]
) -> None:
    """ESEARCH (RFC 4731) answers in ranges (`ALL 1:4`); the UIDs must be the same."""
    with filled.desktop() as desktop:
        assert b"ESEARCH" in desktop.capabilities()
        desktop.select_folder("INBOX", readonly=True)
        plain = sorted(desktop.search(criteria, charset="UTF-8"))
        assert search_uids(desktop, criteria, charset="UTF-8") == plain
    if criteria == ["ALL"]:
        assert len(plain) >= 4


def test_flag_criteria_match_the_servers_flags(filled: Inbox) -> None:
    assert _api(filled, unread="true") == _server(filled, "UNSEEN")
    assert _api(filled, unread="false") == _server(filled, "SEEN")
    assert _api(filled, flagged="true") == _server(filled, "FLAGGED") == {"Compte rendu opératoire"}
    assert _api(filled, has_attachments="true") == {
        "Compte rendu opératoire",
        "Lettre de sortie",
        "RCP oncologie",
    }
    assert _api(filled, urgent="true") == {"Kaliémie du 3 décembre"}


def test_criteria_combine(filled: Inbox) -> None:
    assert _api(filled, q="compte", has_attachments="true", unread="true") == {
        "Compte rendu opératoire"
    }
    assert _api(filled, text="rendu", unread="false") == {"RCP oncologie"}


def test_a_search_walks_a_bounded_number_of_envelopes_per_request(
    filled: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Short pages that still continue: the same matches, in more requests."""
    monkeypatch.setattr(search, "SCAN_BUDGET", 2)
    assert _api(filled, q="chu", limit=10) == {subject for subject, *_ in MAIL}


def test_a_search_that_cannot_be_honoured_is_refused_not_ignored(filled: Inbox) -> None:
    url = f"/api/v1/mailboxes/{filled.mailbox_id}/messages"
    blank = filled.http.get(url, headers=filled.headers, query_string={"q": "   "})
    assert blank.status_code == 400 and body(blank)["code"] == "search_unsupported"
    nowhere = filled.http.get(
        url, headers=filled.headers, query_string={"text": "rendu", "folder": "Nulle part"}
    )
    assert nowhere.status_code == 404
    too_long = filled.http.get(url, headers=filled.headers, query_string={"q": "x" * 201})
    assert too_long.status_code == 422
