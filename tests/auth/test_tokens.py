"""Tokens the server did not sign as it signs them are refused, whatever their claims say."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask_jwt_extended import create_access_token, decode_token

from tests.factories import create_user
from tests.support import Authenticator, bearer, wait_until


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _signed_in(client, services) -> dict:
    create_user(services, "alice")
    return Authenticator().sign_in(client, "alice")


def _claims(app, token: str) -> dict:
    with app.app_context():
        return decode_token(token)


def _same_session_token(app, access_token: str, lifetime: timedelta) -> str:
    """An access token for the same user and device as `access_token`, signed by the
    gateway, living `lifetime` (negative: already expired)."""
    claims = _claims(app, access_token)
    with app.app_context():
        return create_access_token(
            identity=claims["sub"],
            additional_claims={"scope": "session", "dev": claims["dev"]},
            expires_delta=lifetime,
        )


def test_alg_none_token_is_refused(app, client, services) -> None:
    claims = _claims(app, _signed_in(client, services)["access_token"])
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    response = client.get("/api/v1/devices", headers=bearer(unsigned))
    assert response.status_code == 401
    assert response.get_json()["code"] == "token_invalid"


def test_token_signed_with_another_key_is_refused(app, client, services) -> None:
    claims = _claims(app, _signed_in(client, services)["access_token"])
    forged = pyjwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA")
    response = client.get("/api/v1/devices", headers=bearer(forged))
    assert response.status_code == 401
    assert response.get_json()["code"] == "token_invalid"


def test_hmac_keyed_with_the_public_key_is_refused(app, client, services) -> None:
    claims = _claims(app, _signed_in(client, services)["access_token"])
    # The algorithm-confusion attack: HS256 with the (public) verification key as secret.
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}"
    mac = hmac.new(app.config["JWT_PUBLIC_KEY"], signing_input.encode(), hashlib.sha256)
    signature = base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")
    response = client.get("/api/v1/devices", headers=bearer(f"{signing_input}.{signature}"))
    assert response.status_code == 401
    assert response.get_json()["code"] == "token_invalid"


def test_tampered_claims_break_the_signature(app, client, services) -> None:
    token = _signed_in(client, services)["access_token"]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "usr_someone_else"
    response = client.get("/api/v1/devices", headers=bearer(f"{header}.{_b64(claims)}.{signature}"))
    assert response.status_code == 401


def test_expired_access_token_is_refused(app, client, services) -> None:
    session = _signed_in(client, services)
    expired = _same_session_token(app, session["access_token"], timedelta(seconds=-1))
    response = client.get("/api/v1/devices", headers=bearer(expired))
    assert response.status_code == 401
    assert response.get_json()["code"] == "token_expired"


def test_tokens_are_eddsa_and_carry_jti_device_and_type(app, client, services) -> None:
    session = _signed_in(client, services)
    header = json.loads(base64.urlsafe_b64decode(session["access_token"].split(".")[0] + "=="))
    assert header["alg"] == "EdDSA"
    access = _claims(app, session["access_token"])
    refresh = _claims(app, session["refresh_token"])
    assert access["type"] == "access" and refresh["type"] == "refresh"
    assert access["dev"] == refresh["dev"] == session["device_id"]
    assert access["jti"] != refresh["jti"]
    assert access["exp"] - access["iat"] == 600


def test_a_token_accepted_before_is_refused_once_it_expires(app, client, services) -> None:
    session = _signed_in(client, services)
    short = _same_session_token(app, session["access_token"], timedelta(seconds=2))
    assert client.get("/api/v1/devices", headers=bearer(short)).status_code == 200
    # Its signature was checked once; its expiry is checked on every call all the same.
    expiry = _claims(app, short)["exp"]
    wait_until(lambda: time.time() >= expiry, timeout=10, what="the token to expire")
    response = client.get("/api/v1/devices", headers=bearer(short))
    assert response.status_code == 401
    assert response.get_json()["code"] == "token_expired"


def test_a_token_one_gateway_accepted_is_not_trusted_by_one_with_other_keys(
    app, client, services, make_app
) -> None:
    token = _signed_in(client, services)["access_token"]
    assert client.get("/api/v1/devices", headers=bearer(token)).status_code == 200
    other = make_app(ESTAFETTE_SECRET_KEY="another-secret-key-another-secret-key-x")
    response = other.test_client().get("/api/v1/devices", headers=bearer(token))
    assert response.status_code == 401
    assert response.get_json()["code"] == "token_invalid"
