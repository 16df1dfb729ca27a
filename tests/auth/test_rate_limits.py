"""Sign-in limits: per account and address, keyed by a hash, and never a 500 without Redis."""

from __future__ import annotations

import io
import logging

from sqlalchemy import text

from tests.factories import create_user
from tests.support import DEFAULT_PASSWORD

WRONG = {"username": "alice", "password": "wrong password"}


def _login(client, body: dict, address: str):
    return client.post("/api/v1/auth/login", json=body, environ_base={"REMOTE_ADDR": address})


def test_guesses_from_one_address_do_not_lock_the_owner_out_from_hers(app, services) -> None:
    create_user(services, "alice")
    client = app.test_client()
    attacker = [_login(client, WRONG, "203.0.113.9").status_code for _ in range(12)]

    owner = _login(client, {"username": "alice", "password": DEFAULT_PASSWORD}, "198.51.100.4")

    assert attacker[:10] == [401] * 10 and attacker[10:] == [429, 429]
    assert owner.status_code == 200


def test_limiter_keys_and_log_lines_never_name_the_account(app, services, caplog) -> None:
    create_user(services, "alice")
    client = app.test_client()
    with caplog.at_level(logging.DEBUG):
        for _ in range(11):
            _login(
                client,
                {"username": "alice\r\nFORGED audit line", "password": "x" * 12},
                "192.0.2.1",
            )
    with services.engine.connect() as conn:
        keys = [row[0] for row in conn.execute(text("SELECT key FROM rate_limit_counters"))]

    assert keys and not any("alice" in key for key in keys)
    assert "alice" not in caplog.text
    assert all("\n" not in r.getMessage() and "\r" not in r.getMessage() for r in caplog.records)


def test_a_value_with_line_breaks_cannot_forge_a_log_line(app) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("estafette.test.forgery")
    logger.addHandler(handler)
    try:
        logger.warning("login refused for %s", "bob\r\n2026-12-03 INFO estafette.audit ok\u2028x")
    finally:
        logger.removeHandler(handler)

    assert stream.getvalue().count("\n") == 1
    assert "\\r\\n2026-12-03" in stream.getvalue()
