"""The mobile flow (RFC 8252) against the real provider: e-CPS in the system browser, a
one-time code back to the app, a device-bound session; the provider's tokens stay here."""

from __future__ import annotations

import json

from sqlalchemy import select

from backend.storage.models import AuditRecord, Device, OidcIdentity
from tests.oidc.support import WEB_REDIRECT, professional
from tests.support import bearer, body


def test_an_e_cps_sign_in_opens_a_device_bound_session(client, services, phone, oidc_provider):
    _username, national_id = professional(services, oidc_provider)

    session = phone.sign_in(national_id)

    assert set(session) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
        "device_id",
    }
    devices = client.get("/api/v1/devices", headers=bearer(session["access_token"]))
    assert devices.status_code == 200, body(devices)
    assert [d["id"] for d in body(devices)] == [session["device_id"]]
    with services.sessions() as db:
        device = db.scalar(select(Device).where(Device.public_id == session["device_id"]))
        assert device.auth_method == "psc_ecps"
        link = db.scalar(select(OidcIdentity).where(OidcIdentity.subject == national_id))
        assert link.access_token  # kept, sealed, for the mailbox; never sent to the app
        assert link.access_token not in str(session)
        opened = db.scalars(
            select(AuditRecord).where(AuditRecord.action == "auth.session_open")
        ).all()
    assert '"method":"psc_ecps"' in opened[-1].details


def test_a_cps_card_read_through_psc_is_recorded_as_psc_card(services, phone, oidc_provider):
    _username, national_id = professional(services, oidc_provider)

    session = phone.sign_in(national_id, amr=("sc",))

    with services.sessions() as db:
        device = db.scalar(select(Device).where(Device.public_id == session["device_id"]))
    assert device.auth_method == "psc_card"


def test_the_web_client_takes_the_same_flow_with_a_same_site_redirect(
    services, phone, oidc_provider
):
    _username, national_id = professional(services, oidc_provider)

    session = phone.sign_in(national_id, redirect_uri=WEB_REDIRECT)

    assert session["token_type"] == "Bearer"


def test_a_redirect_uri_the_establishment_did_not_allow_is_refused(phone):
    _attempt, started = phone.start(redirect_uri="https://attacker.example/steal")

    assert started.status_code == 400
    assert body(started)["code"] == "redirect_uri_not_allowed"


def test_an_unknown_provider_is_not_found(phone):
    _attempt, started = phone.start(provider="facebook")

    assert started.status_code == 404
    assert body(started)["code"] == "oidc_provider_unknown"


def test_the_audit_trail_names_each_sign_in_method(client, services, phone, oidc_provider):
    from tests.admin.conftest import sign_in

    member = sign_in(client, services)  # password + TOTP
    _user, national_id = professional(services, oidc_provider)
    phone.sign_in(national_id)
    phone.sign_in(national_id, amr=("sc",))
    oidc_provider.add_accounts({f"kc-{member.username}": {"preferred_username": member.username}})
    phone.sign_in(f"kc-{member.username}", provider="idp")

    with services.sessions() as db:
        details = db.scalars(
            select(AuditRecord.details).where(AuditRecord.action == "auth.session_open")
        ).all()
    methods = [json.loads(d)["method"] for d in details]
    assert methods == ["otp", "psc_ecps", "psc_card", "idp"]
