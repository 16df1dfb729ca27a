"""GET /messages/{id} against real Dovecot: bodies fetched on demand, whatever the mail is like."""

from __future__ import annotations

from sqlalchemy import update

from backend.storage.models import Mailbox
from devtools import corpus, samples
from tests.messages.support import Inbox
from tests.support import body


def test_a_plain_letter_opens_with_its_text_and_mss_headers(inbox: Inbox) -> None:
    message_id = inbox.deliver(samples.plain_letter(to=inbox.address))

    message = inbox.read(message_id)

    assert message["id"] == message_id
    assert message["mailbox_id"] == inbox.mailbox_id
    assert "Je vous adresse M. Lucien FICTIF" in message["text"]
    assert message["html"] is None
    assert message["headers"] == {"x-mss-nil": samples.NIL}
    assert message["attachments"] == []
    assert message["warnings"] == []


def test_opening_a_message_does_not_mark_it_seen_on_the_server(inbox: Inbox) -> None:
    message_id = inbox.deliver(samples.plain_letter(to=inbox.address))

    inbox.read(message_id)

    with inbox.desktop() as desktop:
        desktop.select_folder("INBOX", readonly=True)
        flags = next(iter(desktop.get_flags(desktop.search("ALL")).values()))
    assert b"\\Seen" not in flags
    assert inbox.read(message_id)["seen"] is False


def test_html_is_sanitized_of_scripts_forms_handlers_and_remote_images(inbox: Inbox) -> None:
    message = inbox.read(inbox.deliver(corpus.html_hostile()))

    html = message["html"]
    assert "Bonjour" in html
    for forbidden in (
        "<script",
        "onload",
        "<form",
        "<input",
        "<iframe",
        "<object",
        "<style",
        "javascript:",
        "tracker.example",
        "t.example",
        "evil.example",
        "phish.example",
    ):
        assert forbidden not in html, forbidden
    assert 'href="https://ok.example/doc"' in html
    assert message["text"].strip() == "Version texte."


def test_the_sample_rcp_agenda_keeps_its_table_but_loses_its_tracking_pixel(inbox: Inbox) -> None:
    message = inbox.read(inbox.deliver(samples.html_alternative(to=inbox.address)))

    assert "<table" in message["html"] and "14 h 40" in message["html"]
    assert "tracker.example" not in message["html"] and "<script" not in message["html"]
    assert "RCP d'oncologie digestive" in message["text"]


def test_html_only_mail_also_gets_a_text_rendering(inbox: Inbox) -> None:
    message = inbox.read(inbox.deliver(corpus.html_only()))

    assert message["text"] == "Bonjour,\n\nRésultat normal.\nCordialement"
    assert "<b>normal</b>" in message["html"] and "alert" not in message["html"]


def test_a_truncated_multipart_in_an_unknown_charset_is_shown_with_warnings(inbox: Inbox) -> None:
    message = inbox.read(inbox.deliver(samples.malformed(to=inbox.address)))

    assert "malformed" in message["warnings"]
    assert "unknown_charset" in message["warnings"]
    assert "veuillez trouver ci-joint le compte rendu" in message["text"]
    assert [a["filename"] for a in message["attachments"]] == ["CRO.pdf"]


def test_text_declared_utf8_but_written_in_latin1_is_read_with_a_warning(inbox: Inbox) -> None:
    message = inbox.read(inbox.deliver(corpus.undeclared_latin1()))

    assert message["text"].strip() == "Compte rendu opératoire : résultats normaux."
    assert message["warnings"] == ["charset_mismatch"]


def test_an_unknown_charset_is_decoded_with_replacement_and_a_warning(inbox: Inbox) -> None:
    message = inbox.read(inbox.deliver(corpus.unknown_charset()))

    assert "Bonjour, voici le r" in message["text"]
    assert "unknown_charset" in message["warnings"]


def test_an_honest_latin9_quoted_printable_body_decodes_exactly(inbox: Inbox) -> None:
    message = inbox.read(inbox.deliver(corpus.latin1_declared()))

    assert message["text"].strip() == "Fièvre à 39,5 °C, œdème."
    assert message["warnings"] == []


def test_bytes_that_are_not_mime_at_all_are_shown_raw_not_dropped(inbox: Inbox) -> None:
    message = inbox.read(inbox.deliver(corpus.not_mime_at_all()))

    assert "still readable text" in message["text"]
    assert "malformed" in message["warnings"]


def test_a_multipart_without_boundary_is_shown_as_its_raw_text(inbox: Inbox) -> None:
    message = inbox.read(inbox.deliver(corpus.multipart_without_boundary()))

    assert "texte perdu ?" in message["text"]
    assert "malformed" in message["warnings"]


def test_thousands_of_headers_and_a_huge_subject_still_open(inbox: Inbox) -> None:
    message = inbox.read(inbox.deliver(corpus.huge_headers()))

    assert message["text"].strip() == "Le corps est court."
    assert message["subject"].startswith("Très long sujet")


def test_nested_multiparts_give_text_html_and_attachments_with_imap_part_numbers(
    inbox: Inbox,
) -> None:
    raw, expected = corpus.nested_multiparts()
    message = inbox.read(inbox.deliver(raw))

    assert message["text"].strip() == "Texte brut du message imbriqué."
    assert 'src="cid:logo@test"' in message["html"]
    assert "tracker.example" not in message["html"]
    parts = {a["part"]: a for a in message["attachments"]}
    assert set(parts) == {"1.2.2", "2", "3"}
    assert parts["2"]["filename"] == "compte-rendu.pdf"
    assert parts["2"]["size"] == len(expected["2"])
    assert parts["3"]["content_type"] == "message/rfc822"


def test_a_server_that_cannot_be_reached_gives_503_mailbox_unavailable(
    inbox: Inbox, dovecot_services
) -> None:
    message_id = inbox.deliver(samples.plain_letter(to=inbox.address))
    with dovecot_services.sessions.begin() as db:
        db.execute(update(Mailbox).where(Mailbox.public_id == inbox.mailbox_id).values(imap_port=1))

    response = inbox.get(message_id)

    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert body(response)["code"] == "mailbox_unavailable"


def test_a_message_expunged_elsewhere_is_not_found_rather_than_an_error(inbox: Inbox) -> None:
    message_id = inbox.deliver(samples.plain_letter(to=inbox.address))
    with inbox.desktop() as desktop:
        desktop.select_folder("INBOX")
        desktop.delete_messages(desktop.search("ALL"))
        desktop.expunge()

    response = inbox.get(message_id)

    assert response.status_code == 404
    assert body(response)["code"] == "not_found"
