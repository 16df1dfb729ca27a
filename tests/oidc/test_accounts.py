"""Which account a provider's sign-in opens: pre-linked by an administrator, linked by the
user, made on first sign-in (JIT), or none (`account_not_provisioned`); e-CPS is a strong
second factor for admin calls; the establishment's IdP may grant the admin role."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from backend.storage.models import Device, User, utcnow
from tests.admin.conftest import sign_in
from tests.oidc.support import new_rpps, professional, psc_claims
from tests.support import bearer, body


def _session_of(phone, national_id: str) -> dict:
    return phone.sign_in(national_id)


def test_an_unknown_professional_gets_account_not_provisioned(services, phone, oidc_provider):
    national_id = new_rpps()
    oidc_provider.add_accounts({national_id: psc_claims(national_id)})
    attempt = phone.through_provider(national_id)

    refused = phone.exchange(attempt.returned()["code"], attempt.verifier)

    assert refused.status_code == 403, body(refused)
    assert body(refused)["code"] == "account_not_provisioned"
    with services.sessions() as db:
        assert db.scalar(select(User).where(User.cps_id == national_id)) is None


def test_with_jit_provisioning_a_first_sign_in_makes_the_account(
    make_app, oidc_settings, oidc_provider
):
    from tests.oidc.support import MobileApp

    app = make_app(**oidc_settings(jit=True))
    phone = MobileApp(app.test_client(), oidc_provider)
    national_id = new_rpps()
    oidc_provider.add_accounts({national_id: psc_claims(national_id, "Louise", "BERNARD")})

    phone.sign_in(national_id)

    with app.extensions["estafette"].sessions() as db:
        user = db.scalar(select(User).where(User.cps_id == national_id))
    assert (user.display_name, user.is_admin) == ("Louise BERNARD", False)


def test_an_administrator_pre_links_a_professional_by_their_rpps(
    client, services, phone, oidc_provider
):
    admin = sign_in(client, services, admin=True)
    user = sign_in(client, services)
    national_id = new_rpps()
    oidc_provider.add_accounts({national_id: psc_claims(national_id)})

    patched = client.patch(
        f"/api/v1/admin/users/{user.user_id}", headers=admin.headers, json={"cps_id": national_id}
    )
    assert patched.status_code == 200, body(patched)
    session = _session_of(phone, national_id)

    me = client.get("/api/v1/devices", headers=bearer(session["access_token"]))
    assert me.status_code == 200
    with services.sessions() as db:
        device = db.scalar(select(Device).where(Device.public_id == session["device_id"]))
        assert db.get(User, device.user_id).public_id == user.user_id


def test_a_password_and_totp_user_links_their_psc_identity_once(
    client, services, phone, oidc_provider
):
    user = sign_in(client, services)  # password + TOTP
    national_id = new_rpps()
    oidc_provider.add_accounts({national_id: psc_claims(national_id)})
    attempt = phone.through_provider(national_id)

    linked = client.post(
        "/api/v1/auth/oidc/link",
        headers=user.headers,
        json={"code": attempt.returned()["code"], "code_verifier": attempt.verifier},
    )

    assert linked.status_code == 200, body(linked)
    assert body(linked) == {"provider": "psc", "method": "psc_ecps"}
    session = _session_of(phone, national_id)  # from now on PSC opens this account
    with services.sessions() as db:
        device = db.scalar(select(Device).where(Device.public_id == session["device_id"]))
        assert db.get(User, device.user_id).public_id == user.user_id


def test_an_identity_linked_to_someone_else_cannot_be_linked_again(
    client, services, phone, oidc_provider
):
    _owner, national_id = professional(services, oidc_provider)
    phone.sign_in(national_id)
    intruder = sign_in(client, services)
    attempt = phone.through_provider(national_id)

    refused = client.post(
        "/api/v1/auth/oidc/link",
        headers=intruder.headers,
        json={"code": attempt.returned()["code"], "code_verifier": attempt.verifier},
    )

    assert refused.status_code == 409, body(refused)
    assert body(refused)["code"] == "oidc_identity_taken"


def test_e_cps_is_a_strong_second_factor_for_admin_calls_as_the_card_is(
    client, services, phone, oidc_provider
):
    admin = sign_in(client, services, admin=True)  # a TOTP session, for comparison
    _username, national_id = professional(services, oidc_provider)
    with services.sessions() as db:
        db.execute(update(User).where(User.cps_id == national_id).values(is_admin=True))
        db.commit()
    session = phone.sign_in(national_id)
    an_hour_ago = utcnow() - timedelta(hours=1)
    with services.sessions() as db:
        db.execute(update(Device).values(authenticated_at=an_hour_ago))
        db.commit()

    by_ecps = client.get("/api/v1/admin/users", headers=bearer(session["access_token"]))
    by_stale_totp = client.get("/api/v1/admin/users", headers=admin.headers)

    assert by_ecps.status_code == 200, body(by_ecps)
    assert body(by_stale_totp)["code"] == "fresh_mfa_required"


def test_the_establishment_idp_names_the_user_and_its_group_gives_the_admin_role(
    client, services, phone, oidc_provider
):
    nurse, chief = sign_in(client, services), sign_in(client, services)
    oidc_provider.add_accounts(
        {
            f"kc-{nurse.username}": {"preferred_username": nurse.username, "groups": ["soins"]},
            f"kc-{chief.username}": {
                "preferred_username": chief.username,
                "groups": ["soins", "estafette-admins"],
            },
        }
    )

    phone.sign_in(f"kc-{nurse.username}", provider="idp")
    session = phone.sign_in(f"kc-{chief.username}", provider="idp")

    names = [nurse.username, chief.username]
    with services.sessions() as db:
        admins = {
            u.username: u.is_admin for u in db.scalars(select(User).where(User.username.in_(names)))
        }
        device = db.scalar(select(Device).where(Device.public_id == session["device_id"]))
    assert admins == {nurse.username: False, chief.username: True}
    assert device.auth_method == "idp"
