"""The signing key rotates without signing anyone out (ESTAFETTE_SIGNING_KEYS): tokens name
their key in `kid`, the first key of the ring signs and every key of it verifies.

The rollout is the runbook's, host by host on one database: add the new key behind the
current one everywhere, then put it in front, then retire the old one once its last token
has expired."""

from __future__ import annotations

import threading

import jwt as pyjwt
import pytest
from flask_jwt_extended import decode_token

from backend.config import ConfigError, load_settings
from tests.conftest import TEST_DATA_KEY, TEST_SECRET_KEY
from tests.factories import create_user
from tests.support import Authenticator, bearer, body, wait_until

NEW_SECRET = "the-next-signing-secret-long-enough-for-eddsa-derivation"
BEHIND = f"default:{TEST_SECRET_KEY},next:{NEW_SECRET}"
IN_FRONT = f"next:{NEW_SECRET},default:{TEST_SECRET_KEY}"


def _kid(token: str) -> str | None:
    return pyjwt.get_unverified_header(token).get("kid")


def _lists(app, token: str) -> int:
    return app.test_client().get("/api/v1/devices", headers=bearer(token)).status_code


def test_a_rotation_signs_nobody_out_and_new_tokens_carry_the_new_kid(make_app) -> None:
    before = make_app()
    create_user(before.extensions["estafette"], "alice")
    session = Authenticator().sign_in(before.test_client(), "alice")
    assert _kid(session["access_token"]) == "default"

    behind = make_app(ESTAFETTE_SIGNING_KEYS=BEHIND)
    in_front = make_app(ESTAFETTE_SIGNING_KEYS=IN_FRONT)
    assert _lists(behind, session["access_token"]) == 200
    assert _lists(in_front, session["access_token"]) == 200

    refreshed = in_front.test_client().post(
        "/api/v1/auth/refresh", headers=bearer(session["refresh_token"])
    )
    assert refreshed.status_code == 200, body(refreshed)
    renewed = body(refreshed)
    assert _kid(renewed["access_token"]) == "next"
    assert _kid(renewed["refresh_token"]) == "next"
    # A host still on the previous step (new key behind) accepts what the new one signs.
    assert _lists(behind, renewed["access_token"]) == 200
    assert _lists(in_front, renewed["access_token"]) == 200

    retired = make_app(ESTAFETTE_SIGNING_KEYS=f"next:{NEW_SECRET}")
    assert _lists(retired, renewed["access_token"]) == 200
    refused = retired.test_client().get("/api/v1/devices", headers=bearer(session["access_token"]))
    assert refused.status_code == 401
    assert refused.content_type == "application/problem+json"
    assert body(refused)["code"] == "token_invalid"


def test_tokens_from_before_kids_existed_still_verify(make_app) -> None:
    app = make_app()
    create_user(app.extensions["estafette"], "bruno")
    session = Authenticator().sign_in(app.test_client(), "bruno")
    with app.app_context():
        claims = decode_token(session["access_token"])
    legacy = pyjwt.encode(claims, app.config["JWT_PRIVATE_KEY"], algorithm="EdDSA")
    assert _kid(legacy) is None

    assert _lists(make_app(ESTAFETTE_SIGNING_KEYS=IN_FRONT), legacy) == 200
    assert _lists(make_app(ESTAFETTE_SIGNING_KEYS=f"next:{NEW_SECRET}"), legacy) == 401


def test_an_unknown_kid_is_refused_as_problem_json(make_app) -> None:
    app = make_app()
    create_user(app.extensions["estafette"], "chloe")
    session = Authenticator().sign_in(app.test_client(), "chloe")
    with app.app_context():
        claims = decode_token(session["access_token"])
    stranger = pyjwt.encode(
        claims, app.config["JWT_PRIVATE_KEY"], algorithm="EdDSA", headers={"kid": "nobody"}
    )
    response = app.test_client().get("/api/v1/devices", headers=bearer(stranger))
    assert response.status_code == 401
    assert response.content_type == "application/problem+json"
    assert body(response)["code"] == "token_invalid"


def test_a_malformed_ring_is_refused_at_start_naming_the_setting() -> None:
    base = {
        "ESTAFETTE_SECRET_KEY": TEST_SECRET_KEY,
        "ESTAFETTE_VAR_DIR": "/nonexistent",
        "ESTAFETTE_CA_BUNDLE": "system",
        "ESTAFETTE_NIL": "test-nil",
    }
    for ring in ("no-colon", f"a:{NEW_SECRET},a:{NEW_SECRET}", "short:tooshort"):
        with pytest.raises(ConfigError, match="ESTAFETTE_SIGNING_KEYS"):
            load_settings(
                {**base, "ESTAFETTE_SIGNING_KEYS": ring, "ESTAFETTE_DATA_KEY": TEST_DATA_KEY}
            )
    with pytest.raises(ConfigError, match="ESTAFETTE_DATA_KEYS"):
        load_settings({**base, "ESTAFETTE_DATA_KEYS": "k1:not-base64-of-32-bytes"})


def test_a_device_in_use_through_the_whole_rollout_is_never_refused(make_app) -> None:
    """Two api hosts on one database, rolled forward one at a time while a device keeps
    listing and refreshing against whichever host answers: not one call is refused."""
    first = make_app()
    create_user(first.extensions["estafette"], "dora")
    session = Authenticator().sign_in(first.test_client(), "dora")
    hosts = [first, make_app()]  # both on the current key alone
    refused: list[tuple[str, int]] = []
    calls = [0]
    stop = threading.Event()

    def device() -> None:
        tokens = dict(session)
        while not stop.is_set():
            for host in list(hosts):
                status = _lists(host, tokens["access_token"])
                calls[0] += 1
                if status != 200:
                    refused.append(("list", status))
                if calls[0] % 5 == 0:  # refresh now and then: whichever host signs it
                    answer = host.test_client().post(
                        "/api/v1/auth/refresh", headers=bearer(tokens["refresh_token"])
                    )
                    if answer.status_code != 200:
                        refused.append(("refresh", answer.status_code))
                    else:
                        tokens.update(body(answer))
        session.update(tokens)

    traffic = threading.Thread(target=device, daemon=True)
    traffic.start()
    for ring in (BEHIND, IN_FRONT):  # each step rolled out host by host, under traffic
        for index in range(len(hosts)):
            rolled = make_app(ESTAFETTE_SIGNING_KEYS=ring)
            seen = calls[0]  # counted once the new host is in: building it takes a while
            hosts[index] = rolled
            wait_until(lambda seen=seen: calls[0] >= seen + 10, what="calls on the new host")
    stop.set()
    traffic.join(timeout=30)

    assert not traffic.is_alive()
    assert refused == []
    assert _kid(session["access_token"]) == "next"  # refreshed on a host that signs with it
