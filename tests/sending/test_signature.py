"""The user's signature: kept once (sealed), added under what they send from any device."""

from __future__ import annotations

from sqlalchemy import text

from tests.messages.support import audit_text
from tests.sending.support import Doctor
from tests.support import body

# The canary is a word: digits alone can turn up by chance in a timestamp or a hash.
SIGNATURE = "Dr Alice Durand\nCardiologie, bureau Kestrelvale"


def _text(message) -> str:
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def _set(doctor: Doctor, signature: str):
    return doctor.http.put("/api/v1/me/signature", headers=doctor.headers, json={"text": signature})


def test_the_signature_goes_under_each_message_unless_left_out(alice, bob) -> None:
    assert body(alice.http.get("/api/v1/me/signature", headers=alice.headers)) == {"text": ""}
    assert _set(alice, SIGNATURE).status_code == 200
    assert body(alice.http.get("/api/v1/me/signature", headers=alice.headers))["text"] == SIGNATURE

    signed = alice.sent(to=[bob.address], text="Vu ce matin.")
    unsigned = alice.sent(to=[bob.address], text="Sans signature.", signature=False)

    message, _flags = bob.find("INBOX", signed["message_id"])
    assert _text(message) == f"Vu ce matin.\n\n-- \n{SIGNATURE}\n"
    message, _flags = bob.find("INBOX", unsigned["message_id"])
    assert "-- \n" not in _text(message)


def test_the_signature_is_sealed_at_rest_and_never_in_the_audit_trail(
    alice, dovecot_services
) -> None:
    _set(alice, SIGNATURE)
    with dovecot_services.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT signature FROM users WHERE signature IS NOT NULL")
        ).scalar()
    assert b"Kestrelvale" not in bytes(stored)
    assert "Kestrelvale" not in audit_text(dovecot_services)


def test_an_empty_signature_removes_it(alice, bob) -> None:
    _set(alice, SIGNATURE)
    assert body(_set(alice, "  ")) == {"text": ""}
    sent = alice.sent(to=[bob.address], text="Rien dessous.")
    message, _flags = bob.find("INBOX", sent["message_id"])
    assert _text(message) == "Rien dessous.\n"
