"""OIDC Back-Channel Logout 1.0: when the user signs out at the provider (or the provider
ends their session), the provider tells the gateway, and the sessions it opened end."""

from __future__ import annotations

from tests.oidc.support import PSC_CLIENT, professional
from tests.support import bearer, body


def test_the_providers_logout_ends_the_sessions_it_opened(
    client, services, phone, oidc_provider, live_gateway
):
    _username, national_id = professional(services, oidc_provider)
    first, second = phone.sign_in(national_id), phone.sign_in(national_id)
    for session in (first, second):
        assert (
            client.get("/api/v1/devices", headers=bearer(session["access_token"])).status_code
            == 200
        )

    oidc_provider.backchannel_logout(PSC_CLIENT, national_id)  # returns once delivered

    for session in (first, second):
        ended = client.get("/api/v1/devices", headers=bearer(session["access_token"]))
        assert ended.status_code == 401
        assert body(ended)["code"] == "token_revoked"
        refreshed = client.post("/api/v1/auth/refresh", headers=bearer(session["refresh_token"]))
        assert refreshed.status_code == 401


def test_another_users_sessions_are_left_alone(
    client, services, phone, oidc_provider, live_gateway
):
    _a, leaving = professional(services, oidc_provider)
    _b, staying = professional(services, oidc_provider)
    phone.sign_in(leaving)
    kept = phone.sign_in(staying)

    oidc_provider.backchannel_logout(PSC_CLIENT, leaving)

    assert client.get("/api/v1/devices", headers=bearer(kept["access_token"])).status_code == 200


def test_a_forged_logout_token_is_refused(client):
    refused = client.post(
        "/api/v1/auth/oidc/psc/backchannel-logout",
        data={"logout_token": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."},
    )

    assert refused.status_code == 400
    assert body(refused)["code"] == "logout_token_invalid"
