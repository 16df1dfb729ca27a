"""The data key rotates online (ESTAFETTE_DATA_KEYS, `keys rotate-data`): every sealed value
names its key, the rotation re-seals in short batches while the api serves, a second run has
nothing left to do, and the old key can then leave the ring."""

from __future__ import annotations

import base64
import os
import threading

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select

from backend.storage import encryption
from backend.storage.key_rotation import sealed_models
from backend.storage.models import Message
from backend.store.receipts import message_id_digest
from tests.conftest import TEST_DATA_KEY
from tests.factories import create_user
from tests.mailboxes.support import deliver, make_mailbox
from tests.support import Authenticator, bearer, body

NEW_KEY = base64.urlsafe_b64encode(b"n" * 32).decode()
RING = f"next:{NEW_KEY},default:{TEST_DATA_KEY}"


def _key_ids(services) -> set[str | None]:
    """The key id of every sealed value in the database."""
    seen: set[str | None] = set()
    with services.sessions() as db:
        for model, fields in sealed_models():
            columns = [getattr(model, field.column) for field in fields]
            for row in db.execute(select(*columns)).all():
                seen.update(encryption.key_id_of(value) for value in row if value is not None)
    return seen


def test_the_api_keeps_listing_while_the_data_key_rotates_then_the_old_key_leaves(
    make_app,
) -> None:
    before = make_app()
    services = before.extensions["estafette"]
    create_user(services, "alice")
    phone = Authenticator()
    phone.sign_in(before.test_client(), "alice")
    mailbox = make_mailbox(services, member="alice")
    deliver(services, mailbox, count=120, subject="Bilan")
    assert _key_ids(services) == {"default"}

    rotating = make_app(ESTAFETTE_DATA_KEYS=RING)
    client = rotating.test_client()
    auth = bearer(phone.sign_in(client, "alice")["access_token"])
    runner = rotating.test_cli_runner()
    result: dict = {}
    rotation = threading.Thread(
        target=lambda: result.update(
            run=runner.invoke(args=["keys", "rotate-data", "--batch", "10"])
        )
    )
    rotation.start()
    listings = []
    while rotation.is_alive() or not listings:
        response = client.get(f"/api/v1/mailboxes/{mailbox}/messages?limit=200", headers=auth)
        assert response.status_code == 200, body(response)
        listings.append(len(body(response)["items"]))
    rotation.join(timeout=120)
    assert set(listings) == {120}

    run = result["run"]
    assert run.exit_code == 0, run.output
    assert "messages: 120 rows read, 120 re-sealed" in run.output
    assert NEW_KEY not in run.output and TEST_DATA_KEY not in run.output
    assert _key_ids(services) == {"next"}
    with services.sessions() as db:
        for message in db.scalars(select(Message)):
            assert message.message_id_digest == message_id_digest(message.message_id_header)

    again = rotating.test_cli_runner().invoke(args=["keys", "rotate-data"])
    assert again.exit_code == 0, again.output
    assert "done: 0 rows re-sealed" in again.output

    retired = make_app(ESTAFETTE_DATA_KEYS=f"next:{NEW_KEY}")
    client = retired.test_client()
    auth = bearer(phone.sign_in(client, "alice")["access_token"])  # the TOTP secret opens
    listing = client.get(f"/api/v1/mailboxes/{mailbox}/messages?limit=200", headers=auth)
    assert listing.status_code == 200
    assert {item["subject"] for item in body(listing)["items"]} == {
        f"Bilan {i}" for i in range(120)
    }


def test_a_value_sealed_before_key_ids_still_opens_and_names_no_key() -> None:
    old = b"o" * 32
    nonce = os.urandom(12)
    legacy = b"\x01" + nonce + AESGCM(old).encrypt(nonce, b"secret", b"users.totp_secret")
    encryption.set_data_keys([("next", b"n" * 32), ("default", old)])
    assert encryption.key_id_of(legacy) is None
    assert encryption.decrypt(legacy, b"users.totp_secret") == b"secret"
    resealed = encryption.encrypt(b"secret", b"users.totp_secret")
    assert encryption.key_id_of(resealed) == "next"


def test_a_value_under_a_key_not_in_the_ring_is_refused() -> None:
    encryption.set_data_keys([("old", b"o" * 32)])
    sealed = encryption.encrypt(b"secret", b"users.totp_secret")
    encryption.set_data_keys([("next", b"n" * 32)])
    with pytest.raises(encryption.DataKeyError, match="'old'"):
        encryption.decrypt(sealed, b"users.totp_secret")
