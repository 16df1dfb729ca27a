"""Sign-in with password and TOTP: two factors, codes good once, locks, device sessions."""

from __future__ import annotations

import time
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from backend.accounts import passwords
from backend.storage.database import session_scope
from backend.storage.models import AuditRecord, Device, User, utcnow
from tests.factories import create_user
from tests.support import DEFAULT_PASSWORD, Authenticator, bearer


def _login(client, username: str, password: str = DEFAULT_PASSWORD):
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def _enrolled(client, services, username: str = "alice") -> tuple[str, str]:
    """A user whose TOTP was just activated (the current step is used); (secret, mfa_token)."""
    create_user(services, username)
    mfa = _login(client, username).get_json()["mfa_token"]
    secret = client.post("/api/v1/auth/otp/enroll", headers=bearer(mfa)).get_json()["secret"]
    activated = client.post(
        "/api/v1/auth/otp/activate", headers=bearer(mfa), json={"code": pyotp.TOTP(secret).now()}
    )
    assert activated.status_code == 200
    return secret, _login(client, username).get_json()["mfa_token"]


def _otp(client, mfa: str, code: str, push_token: str | None = None):
    device = {"name": "iPad soins", "platform": "ios"}
    if push_token:
        device["push_token"] = push_token
    return client.post(
        "/api/v1/auth/otp", headers=bearer(mfa), json={"code": code, "device": device}
    )


def _actions(services) -> list[tuple[str, str]]:
    with services.sessions() as db:
        return [
            (r.action, r.outcome) for r in db.scalars(select(AuditRecord).order_by(AuditRecord.id))
        ]


def test_password_then_totp_opens_a_device_session(client, services) -> None:
    create_user(services, "alice")
    session = Authenticator().sign_in(client, "alice")
    assert session["token_type"] == "Bearer" and session["expires_in"] == 600
    devices = client.get("/api/v1/devices", headers=bearer(session["access_token"])).get_json()
    assert [d["id"] for d in devices] == [session["device_id"]]
    assert ("auth.session_open", "ok") in _actions(services)


def test_first_login_requires_enrolment_with_an_svg_qr_code(client, services) -> None:
    create_user(services, "alice")
    first = _login(client, "alice").get_json()
    assert first["enrollment_required"] is True and first["mfa"] == ["totp"]
    enrolled = client.post("/api/v1/auth/otp/enroll", headers=bearer(first["mfa_token"]))
    payload = enrolled.get_json()
    assert payload["otpauth_uri"].startswith("otpauth://totp/Estafette:alice?secret=")
    assert payload["qr_svg"].lstrip().startswith("<svg")


def test_activation_returns_ten_recovery_codes_that_work_once(client, services) -> None:
    create_user(services, "alice")
    mfa = _login(client, "alice").get_json()["mfa_token"]
    secret = client.post("/api/v1/auth/otp/enroll", headers=bearer(mfa)).get_json()["secret"]
    codes = client.post(
        "/api/v1/auth/otp/activate", headers=bearer(mfa), json={"code": pyotp.TOTP(secret).now()}
    ).get_json()["recovery_codes"]
    assert len(set(codes)) == 10
    mfa = _login(client, "alice").get_json()["mfa_token"]
    assert _otp(client, mfa, codes[0]).status_code == 200
    mfa = _login(client, "alice").get_json()["mfa_token"]
    assert _otp(client, mfa, codes[0]).get_json()["code"] == "otp_invalid"


def test_wrong_password_is_refused_and_traced(client, services) -> None:
    create_user(services, "alice")
    response = _login(client, "alice", "not the password")
    assert response.status_code == 401
    assert response.get_json()["code"] == "invalid_credentials"
    assert ("auth.login", "refused") in _actions(services)


def test_unknown_user_costs_the_same_password_hash_as_a_known_one(
    client, services, monkeypatch
) -> None:
    create_user(services, "alice")
    calls: list[bool] = []

    class CountingHasher:
        def __init__(self, inner) -> None:
            self.inner = inner

        def verify(self, stored: str, password: str) -> bool:
            calls.append(True)
            return self.inner.verify(stored, password)

        def __getattr__(self, name: str):
            return getattr(self.inner, name)

    monkeypatch.setattr(passwords, "_hasher", CountingHasher(passwords._hasher))
    assert _login(client, "nobody").get_json()["code"] == "invalid_credentials"
    assert _login(client, "alice", "wrong").get_json()["code"] == "invalid_credentials"
    assert calls == [True, True]


def test_replayed_totp_code_is_refused(client, services) -> None:
    secret, mfa = _enrolled(client, services)
    code = pyotp.TOTP(secret).at(time.time() + 30)  # the step after activation's
    assert _otp(client, mfa, code).status_code == 200
    mfa = _login(client, "alice").get_json()["mfa_token"]
    replay = _otp(client, mfa, code)
    assert replay.status_code == 401 and replay.get_json()["code"] == "otp_replayed"


def test_one_step_of_clock_drift_is_accepted_two_are_not(client, services) -> None:
    secret, mfa = _enrolled(client, services)
    too_far = pyotp.TOTP(secret).at(time.time() + 90)
    assert _otp(client, mfa, too_far).get_json()["code"] == "otp_invalid"
    drifted = pyotp.TOTP(secret).at(time.time() + 30)
    assert _otp(client, mfa, drifted).status_code == 200


def test_five_wrong_codes_lock_the_account_for_a_growing_delay(client, services) -> None:
    _secret, mfa = _enrolled(client, services)
    answers = [_otp(client, mfa, "000000") for _ in range(5)]
    assert [a.status_code for a in answers[:4]] == [401] * 4
    locked = answers[4]
    assert locked.status_code == 429 and locked.get_json()["code"] == "locked"
    # flask-limiter rewrites Retry-After as whole seconds left, so allow the second ticking.
    assert 59 <= int(locked.headers["Retry-After"]) <= 60
    assert ("auth.locked", "refused") in _actions(services)
    # Still locked even with the right password, and the next lock lasts longer.
    assert _login(client, "alice").get_json()["code"] == "locked"
    with session_scope(services.sessions) as db:
        user = db.scalar(select(User).where(User.username == "alice"))
        user.locked_until = utcnow() - timedelta(seconds=1)
    mfa = _login(client, "alice").get_json()["mfa_token"]
    answers = [_otp(client, mfa, "000000") for _ in range(5)]
    assert 119 <= int(answers[4].headers["Retry-After"]) <= 120


def test_the_mfa_token_opens_nothing_else(client, services) -> None:
    create_user(services, "alice")
    mfa = _login(client, "alice").get_json()["mfa_token"]
    assert client.get("/api/v1/mailboxes", headers=bearer(mfa)).status_code == 403


def test_a_session_token_cannot_be_used_as_an_mfa_token(client, services) -> None:
    create_user(services, "alice")
    session = Authenticator().sign_in(client, "alice")
    response = _otp(client, session["access_token"], "123456")
    assert response.status_code == 403


def test_the_mfa_token_is_good_for_one_session_only(client, services) -> None:
    secret, mfa = _enrolled(client, services)
    assert _otp(client, mfa, pyotp.TOTP(secret).at(time.time() + 30)).status_code == 200
    again = _otp(client, mfa, "123456")
    assert again.status_code == 401 and again.get_json()["code"] == "token_revoked"


def test_refresh_rotates_and_a_reused_refresh_token_signs_the_device_out(client, services) -> None:
    create_user(services, "alice")
    first = Authenticator().sign_in(client, "alice")
    second = client.post("/api/v1/auth/refresh", headers=bearer(first["refresh_token"]))
    assert second.status_code == 200
    rotated = second.get_json()
    assert rotated["refresh_token"] != first["refresh_token"]

    reuse = client.post("/api/v1/auth/refresh", headers=bearer(first["refresh_token"]))
    assert reuse.status_code == 401 and reuse.get_json()["code"] == "token_revoked"
    # The whole device session is gone, including the newest tokens.
    assert client.get("/api/v1/devices", headers=bearer(rotated["access_token"])).status_code == 401
    assert (
        client.post("/api/v1/auth/refresh", headers=bearer(rotated["refresh_token"])).status_code
        == 401
    )
    assert ("auth.refresh_reuse", "refused") in _actions(services)


def test_an_access_token_cannot_refresh(client, services) -> None:
    create_user(services, "alice")
    session = Authenticator().sign_in(client, "alice")
    response = client.post("/api/v1/auth/refresh", headers=bearer(session["access_token"]))
    assert response.status_code in (401, 422)
    assert response.content_type == "application/problem+json"


def test_logout_ends_the_session_at_once(client, services) -> None:
    create_user(services, "alice")
    session = Authenticator().sign_in(client, "alice")
    assert (
        client.post("/api/v1/auth/logout", headers=bearer(session["access_token"])).status_code
        == 204
    )
    response = client.get("/api/v1/devices", headers=bearer(session["access_token"]))
    assert response.status_code == 401 and response.get_json()["code"] == "token_revoked"


def test_removing_a_lost_phone_signs_it_out_from_another_device(client, services) -> None:
    create_user(services, "alice")
    auth = Authenticator()
    phone = auth.sign_in(client, "alice", device={"name": "phone", "platform": "android"})
    tablet = auth.sign_in(client, "alice", device={"name": "tablet", "platform": "ios"})
    removed = client.delete(
        f"/api/v1/devices/{phone['device_id']}", headers=bearer(tablet["access_token"])
    )
    assert removed.status_code == 204
    assert client.get("/api/v1/devices", headers=bearer(phone["access_token"])).status_code == 401
    remaining = client.get("/api/v1/devices", headers=bearer(tablet["access_token"])).get_json()
    assert [d["id"] for d in remaining] == [tablet["device_id"]]


def test_another_users_device_cannot_be_removed(client, services) -> None:
    create_user(services, "alice")
    create_user(services, "bob")
    alice = Authenticator().sign_in(client, "alice")
    bob = Authenticator().sign_in(client, "bob")
    response = client.delete(
        f"/api/v1/devices/{alice['device_id']}", headers=bearer(bob["access_token"])
    )
    assert response.status_code == 404


def test_a_session_idle_past_the_limit_ends(client, services) -> None:
    create_user(services, "alice")
    session = Authenticator().sign_in(client, "alice")
    with session_scope(services.sessions) as db:
        device = db.scalar(select(Device).where(Device.public_id == session["device_id"]))
        device.last_seen_at = utcnow() - timedelta(minutes=121)
    response = client.get("/api/v1/devices", headers=bearer(session["access_token"]))
    assert response.status_code == 401 and response.get_json()["code"] == "token_revoked"
    assert ("session.idle_timeout", "ok") in _actions(services)


@pytest.mark.parametrize("minutes", [1])
def test_the_idle_limit_can_be_configured_down_to_minutes(make_app, minutes: int) -> None:
    app = make_app(ESTAFETTE_SESSION_IDLE_MINUTES=str(minutes))
    assert app.extensions["estafette"].settings.session_idle_minutes == minutes
