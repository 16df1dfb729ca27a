"""A one-time code is six ASCII digits or a recovery code; anything else is a 422, never a 500."""

from __future__ import annotations

import pyotp
import pytest
from sqlalchemy import select

from backend.accounts import totp
from backend.storage.models import User
from tests.factories import create_user
from tests.support import DEFAULT_PASSWORD, Authenticator, bearer

# Arabic-Indic and full-width digits pass str.isdigit(); hmac.compare_digest raised on them.
NOT_ASCII_DIGITS = ["١٢٣٤٥٦", "۱۲۳۴۵۶", "１２３４５６"]
MALFORMED = [*NOT_ASCII_DIGITS, "12345", "1234567", "123456\n", "12 345", "abcd-efgh-ijkl-mno1"]


def _mfa(client) -> str:
    login = client.post(
        "/api/v1/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD}
    )
    return login.get_json()["mfa_token"]


def _assert_validation_error(response) -> None:
    assert response.status_code == 422, response.get_json()
    problem = response.get_json()
    assert problem["code"] == "validation_error" and "code" in problem["errors"]


@pytest.mark.parametrize("code", MALFORMED)
def test_a_malformed_code_at_sign_in_is_a_validation_error(client, services, code) -> None:
    create_user(services, "alice")
    Authenticator().sign_in(client, "alice")  # enrolled
    response = client.post(
        "/api/v1/auth/otp",
        headers=bearer(_mfa(client)),
        json={"code": code, "device": {"name": "Pixel", "platform": "android"}},
    )
    _assert_validation_error(response)
    with services.sessions() as db:  # refused before it reached the account
        assert db.scalar(select(User.failed_otp_count)) == 0


def test_non_ascii_digits_are_refused_at_activation_and_reverification(client, services) -> None:
    create_user(services, "alice")
    mfa = _mfa(client)
    client.post("/api/v1/auth/otp/enroll", headers=bearer(mfa))
    for code in NOT_ASCII_DIGITS:
        activation = client.post(
            "/api/v1/auth/otp/activate", headers=bearer(mfa), json={"code": code}
        )
        _assert_validation_error(activation)
    session = Authenticator().sign_in(client, "alice")
    for code in NOT_ASCII_DIGITS:
        verify = client.post(
            "/api/v1/auth/otp/verify",
            headers=bearer(session["access_token"]),
            json={"code": code},
        )
        _assert_validation_error(verify)


def test_a_recovery_code_in_capitals_is_accepted(client, services) -> None:
    create_user(services, "alice")
    auth = Authenticator()
    auth.sign_in(client, "alice")
    response = client.post(
        "/api/v1/auth/otp",
        headers=bearer(_mfa(client)),
        json={"code": auth.recovery_codes[0].upper(), "device": {"name": "P", "platform": "ios"}},
    )
    assert response.status_code == 200, response.get_json()


@pytest.mark.unit
def test_totp_matching_takes_only_ascii_digits() -> None:
    secret = pyotp.random_base32()
    code = pyotp.TOTP(secret).now()
    arabic = code.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert totp.matching_step(secret, code) is not None
    assert totp.matching_step(secret, arabic) is None


def test_a_code_two_steps_share_names_the_later_step_not_a_replay_of_the_earlier() -> None:
    """Six digits repeat, one time in a million: with this secret, steps 59141676 and
    59141677 both give 212317. Once the first has been used, the same digits in the second
    step are that step's code, which the claim (a later step only) then takes."""
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    codes = pyotp.TOTP(secret)
    assert codes.generate_otp(59141676) == codes.generate_otp(59141677) == "212317"

    assert totp.matching_step(secret, "212317", now=59141677 * 30 + 5) == 59141677
