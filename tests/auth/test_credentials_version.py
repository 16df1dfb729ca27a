"""A token taken before a credential change opens nothing after it (audit item 3).

Every token kind carries the user's credentials version; a password change, a TOTP
reset and a disable bump it, whether from the admin API or the command line.
"""

from __future__ import annotations

from flask_jwt_extended import create_access_token, decode_token
from sqlalchemy import select

from backend.storage.models import User
from tests.admin.conftest import sign_in
from tests.factories import create_user
from tests.support import DEFAULT_PASSWORD, Authenticator, bearer

NEW_PASSWORD = "a brand new passphrase"


def _mfa(client, password: str = DEFAULT_PASSWORD) -> str:
    login = client.post("/api/v1/auth/login", json={"username": "alice", "password": password})
    assert login.status_code == 200, login.get_json()
    return login.get_json()["mfa_token"]


def _refused_as_stale(response) -> None:
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["code"] == "credentials_changed"


def _version(services) -> int:
    with services.sessions() as db:
        return db.scalar(select(User.credentials_version).where(User.username == "alice"))


def _cli(app, *args: str, stdin: str | None = None) -> None:
    result = app.test_cli_runner().invoke(args=["users", *args], input=stdin)
    assert result.exit_code == 0, result.output


def test_a_login_token_from_before_an_admin_reset_cannot_enrol_a_new_totp(client, services) -> None:
    admin = sign_in(client, services, admin=True)
    create_user(services, "alice")
    Authenticator().sign_in(client, "alice")
    with services.sessions() as db:
        alice = db.scalar(select(User.public_id).where(User.username == "alice"))
    stolen = _mfa(client)  # the attacker knows the password
    reset = client.patch(
        f"/api/v1/admin/users/{alice}",
        headers=admin.headers,
        json={"reset_otp": True, "password": NEW_PASSWORD},
    )
    assert reset.status_code == 200, reset.get_json()
    _refused_as_stale(client.post("/api/v1/auth/otp/enroll", headers=bearer(stolen)))
    # The owner, with the new password, enrols again.
    assert Authenticator().sign_in(client, "alice", password=NEW_PASSWORD)["access_token"]


def test_a_login_token_from_before_a_password_reset_cannot_sign_in(app, client, services) -> None:
    create_user(services, "alice")
    auth = Authenticator()
    auth.sign_in(client, "alice")
    stolen = _mfa(client)
    _cli(app, "reset-password", "alice", "--password-stdin", stdin=f"{NEW_PASSWORD}\n")
    response = client.post(
        "/api/v1/auth/otp",
        headers=bearer(stolen),
        json={"code": auth.next_code(), "device": {"name": "Pixel", "platform": "android"}},
    )
    _refused_as_stale(response)


def test_session_tokens_from_before_a_disable_stay_dead_after_enable(app, client, services) -> None:
    create_user(services, "alice")
    session = Authenticator().sign_in(client, "alice")
    _cli(app, "disable", "alice")
    _cli(app, "enable", "alice")
    _refused_as_stale(client.get("/api/v1/devices", headers=bearer(session["access_token"])))
    _refused_as_stale(client.post("/api/v1/auth/refresh", headers=bearer(session["refresh_token"])))


def test_each_credential_change_bumps_the_version_once(app, client, services) -> None:
    create_user(services, "alice")
    assert _version(services) == 0
    _cli(app, "reset-otp", "alice")
    _cli(app, "reset-password", "alice", "--password-stdin", stdin=f"{NEW_PASSWORD}\n")
    _cli(app, "disable", "alice")
    assert _version(services) == 3
    _cli(app, "enable", "alice")  # re-enabling ends nothing, and revives nothing
    assert _version(services) == 3


def test_every_token_kind_carries_the_version(app, client, services) -> None:
    create_user(services, "alice")
    _cli(app, "reset-otp", "alice")
    session = Authenticator().sign_in(client, "alice")
    with app.app_context():
        claims = [
            decode_token(t)
            for t in (_mfa(client), session["access_token"], session["refresh_token"])
        ]
    assert [c["cv"] for c in claims] == [1, 1, 1]


def test_a_token_issued_before_the_version_existed_lasts_until_the_next_change(
    app, client, services
) -> None:
    create_user(services, "alice")
    session = Authenticator().sign_in(client, "alice")
    with app.app_context():
        claims = decode_token(session["access_token"])
        legacy = create_access_token(
            identity=claims["sub"], additional_claims={"scope": "session", "dev": claims["dev"]}
        )
    assert client.get("/api/v1/devices", headers=bearer(legacy)).status_code == 200
    _cli(app, "reset-password", "alice", "--password-stdin", stdin=f"{NEW_PASSWORD}\n")
    _refused_as_stale(client.get("/api/v1/devices", headers=bearer(legacy)))
