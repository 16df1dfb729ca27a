"""Every way a sign-in through the provider can be forged or replayed is refused, each
with its own problem+json code, and no session is opened."""

from __future__ import annotations

import secrets
import time

import pytest
from sqlalchemy import func, select

from backend.storage.models import Device
from tests.oidc.support import professional
from tests.support import body


def _devices(services) -> int:
    with services.sessions() as db:
        return db.scalar(select(func.count()).select_from(Device))


def _problem(response, status: int, code: str) -> None:
    assert response.status_code == status, body(response)
    assert response.mimetype == "application/problem+json"
    assert body(response)["code"] == code


def test_a_code_redeemed_with_another_verifier_is_refused_and_spent(services, phone, oidc_provider):
    _user, national_id = professional(services, oidc_provider)
    attempt = phone.through_provider(national_id)
    code = attempt.returned()["code"]

    _problem(phone.exchange(code, secrets.token_urlsafe(48)), 401, "pkce_mismatch")
    _problem(phone.exchange(code, attempt.verifier), 401, "oidc_code_invalid")
    assert _devices(services) == 0


def test_a_one_time_code_redeemed_twice_opens_one_session(services, phone, oidc_provider):
    _user, national_id = professional(services, oidc_provider)
    attempt = phone.through_provider(national_id)
    code = attempt.returned()["code"]

    assert phone.exchange(code, attempt.verifier).status_code == 200
    _problem(phone.exchange(code, attempt.verifier), 401, "oidc_code_invalid")
    assert _devices(services) == 1


def test_an_answer_with_a_wrong_state_is_refused(client, services, phone, oidc_provider):
    _user, national_id = professional(services, oidc_provider)
    _attempt, started = phone.start()
    callback = oidc_provider.sign_in(started.headers["Location"], national_id)
    forged = callback.replace("state=", f"state={secrets.token_urlsafe(8)}")

    response = client.get(forged.removeprefix("http://localhost"))

    _problem(response, 400, "oidc_state_invalid")


def test_an_answer_replayed_to_the_callback_is_refused(client, services, phone, oidc_provider):
    _user, national_id = professional(services, oidc_provider)
    attempt = phone.through_provider(national_id)
    assert attempt.callback.status_code == 302

    replayed = client.get(attempt.callback_url.removeprefix("http://localhost"))

    _problem(replayed, 400, "oidc_state_invalid")


@pytest.mark.parametrize(
    ("tampering", "code"),
    [
        ({"claims": {"nonce": "another-sign-in"}}, "oidc_nonce_mismatch"),
        ({"claims": {"exp": int(time.time()) - 3600}}, "oidc_token_expired"),
        ({"claims": {"aud": "some-other-client"}}, "oidc_audience_mismatch"),
        ({"claims": {"iss": "https://auth.esante.gouv.fr/realms/other"}}, "oidc_issuer_mismatch"),
        ({"claims": {"acr": "eidas0"}}, "oidc_acr_insufficient"),
        ({"claims": {}, "unknown_key": True}, "oidc_signature_invalid"),
    ],
    ids=["wrong-nonce", "expired", "wrong-audience", "wrong-issuer", "weak-acr", "unknown-key"],
)
def test_an_id_token_failing_a_check_is_refused(services, phone, oidc_provider, tampering, code):
    _user, national_id = professional(services, oidc_provider)
    oidc_provider.tamper_next_id_token(
        tampering["claims"], unknown_key=tampering.get("unknown_key", False)
    )

    attempt = phone.through_provider(national_id)

    _problem(attempt.callback, 401, code)
    assert _devices(services) == 0


def test_a_challenge_that_is_not_s256_is_refused(client):
    response = client.get(
        "/api/v1/auth/oidc/psc/start",
        query_string={
            "redirect_uri": "fr.estafette.app:/oidc",
            "code_challenge": "plain-verifier-is-not-accepted",
            "code_challenge_method": "plain",
        },
    )

    _problem(response, 422, "validation_error")
