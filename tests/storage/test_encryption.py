"""Sensitive fields are sealed at rest and bound to their column."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from backend.storage.database import session_scope
from backend.storage.encryption import DataKeyError, decrypt, encrypt, set_data_key
from tests.factories import create_user


def test_a_sealed_value_opens_only_with_its_column_context() -> None:
    set_data_key(b"k" * 32)
    sealed = encrypt(b"JBSWY3DPEHPK3PXP", b"users.totp_secret")
    assert decrypt(sealed, b"users.totp_secret") == b"JBSWY3DPEHPK3PXP"
    with pytest.raises(DataKeyError):
        decrypt(sealed, b"mailboxes.imap_secret")


def test_a_totp_secret_is_not_stored_in_clear(services) -> None:
    from backend.accounts import users

    create_user(services, "dora")
    with session_scope(services.sessions) as db:
        user = users.find_user(db=db, username="dora")
        secret = users.begin_enrolment(db=db, user=user)
    with services.engine.connect() as conn:
        raw = conn.execute(text("SELECT totp_secret FROM users WHERE username = 'dora'")).scalar()
    assert secret.encode() not in bytes(raw)
