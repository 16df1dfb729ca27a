"""No password, code, secret or token ever reaches a log line, during a full sign-in."""

from __future__ import annotations

import logging

import pyotp
from flask_jwt_extended import decode_token

from tests.factories import create_user
from tests.support import Authenticator, bearer

PASSWORD = "Tr0ub4dor&3-canary-password"


def test_a_full_sign_in_logs_no_secret_code_or_token(app, client, services, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    create_user(services, "alice", password=PASSWORD)
    auth = Authenticator()
    session = auth.sign_in(
        client,
        "alice",
        PASSWORD,
        device={"name": "phone", "platform": "android", "push_token": "push-token-canary"},
    )
    refreshed = client.post("/api/v1/auth/refresh", headers=bearer(session["refresh_token"]))
    client.post("/api/v1/auth/login", json={"username": "alice", "password": "wrong-canary"})
    client.post("/api/v1/auth/logout", headers=bearer(refreshed.get_json()["access_token"]))

    with app.app_context():
        jtis = [decode_token(session["access_token"])["jti"]]
    secrets = [
        PASSWORD,
        "wrong-canary",
        auth.secret,
        pyotp.TOTP(auth.secret).now(),
        session["access_token"],
        session["refresh_token"],
        refreshed.get_json()["refresh_token"],
        "push-token-canary",
        *jtis,
        *auth.recovery_codes,
    ]
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert caplog.records, "the sign-in should have logged something to check"
    for secret in secrets:
        assert secret not in logged
