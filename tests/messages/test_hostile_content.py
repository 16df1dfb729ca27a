"""Mail crafted to cost or to deceive, delivered to real Dovecot and opened through the API.

Each answer is a usable 200 or a problem+json 4xx, decided before the first byte of a
download leaves, and the audit trail records what really happened.
"""

from __future__ import annotations

import json
from urllib.parse import unquote

from devtools import corpus
from tests.messages.support import Inbox, audit_rows
from tests.support import body

SPOOFED = "r\u202egnp\u200b\u2028.exe"  # shows as "rexe.png" with the override kept


def _download_rows(services, message_id: str) -> list:
    return [r for r in audit_rows(services, "message.download") if r.target == message_id]


def test_an_attachment_name_loses_bidi_and_control_characters_in_json_and_download(
    inbox: Inbox,
) -> None:
    message_id = inbox.deliver(corpus.with_attachment(b"MZ", SPOOFED, "image", "png"))

    from_imap = inbox.download(message_id, "2")  # not cached yet: straight from IMAP
    [attachment] = inbox.read(message_id)["attachments"]
    from_cache = inbox.download(message_id, "2")

    assert attachment["filename"] == "rgnp.exe"
    for response in (from_imap, from_cache):
        assert response.status_code == 200
        disposition = unquote(response.headers["Content-Disposition"])
        assert "rgnp.exe" in disposition
        assert not any(c in disposition for c in "\u202e\u200b\u2028")


def test_html_nested_fifty_thousand_levels_opens_as_text(inbox: Inbox) -> None:
    message_id = inbox.deliver(corpus.html_nested(50_000))

    message = inbox.read(message_id)

    assert message["html"] is None
    assert "html_not_rendered" in message["warnings"]
    assert message["text"] == "Résultat normal."


def test_html_nested_a_few_levels_is_still_rendered(inbox: Inbox) -> None:
    message = inbox.read(inbox.deliver(corpus.html_nested(50)))

    assert "Résultat normal." in message["html"]
    assert "html_not_rendered" not in message["warnings"]


def test_an_xdm_mime_type_with_a_line_break_is_served_as_bytes_and_audited_truly(
    inbox: Inbox, dovecot_services
) -> None:
    message_id = inbox.deliver(corpus.xdm_with_mime_type("text/xml&#13;&#10;X-Evil: 1"))

    [archive] = inbox.read(message_id)["attachments"]
    response = inbox.download(message_id, "2/xdm/1")

    assert archive["documents"][0]["content_type"] == "application/octet-stream"
    assert response.status_code == 200
    assert response.mimetype == "application/octet-stream"
    assert "X-Evil" not in response.headers
    assert response.data == b"<ClinicalDocument/>"
    assert [r.outcome for r in _download_rows(dovecot_services, message_id)] == ["ok"]


def test_an_xdm_member_larger_than_declared_is_refused_before_the_first_byte(
    inbox: Inbox, dovecot_services
) -> None:
    message_id = inbox.deliver(corpus.xdm_under_declared())

    response = inbox.download(message_id, "2/xdm/1")

    assert response.status_code == 422
    assert body(response)["code"] == "archive_rejected"
    assert response.content_type == "application/problem+json"
    [record] = _download_rows(dovecot_services, message_id)
    assert (record.outcome, json.loads(record.details)["code"]) == ("failed", "archive_rejected")
