"""One-time codes and the lockout hold under concurrent requests, on both databases.

Requests are released together by a barrier, each thread with its own test client, so
they reach the database at the same time as parallel calls from an attacker would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyotp
from sqlalchemy import func, select

from backend.storage.models import Device, RecoveryCode, User
from tests.factories import create_user
from tests.support import DEFAULT_PASSWORD, bearer

PARALLEL = 4


def _all_at_once(app, count: int, call: Callable[[Any], Any]) -> list[Any]:
    """Run `call(client)` in `count` threads released together; the responses."""
    barrier = threading.Barrier(count)

    def one() -> Any:
        client = app.test_client()
        barrier.wait(timeout=30)
        return call(client)

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(one) for _ in range(count)]
        return [f.result(timeout=120) for f in futures]


def _mfa_token(client, username: str = "alice") -> str:
    login = client.post(
        "/api/v1/auth/login", json={"username": username, "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 200, login.get_json()
    return login.get_json()["mfa_token"]


def _enrolled(client, services) -> tuple[str, list[str]]:
    """Alice with TOTP active, the activation's step used; (secret, recovery codes)."""
    create_user(services, "alice")
    mfa = _mfa_token(client)
    secret = client.post("/api/v1/auth/otp/enroll", headers=bearer(mfa)).get_json()["secret"]
    activated = client.post(
        "/api/v1/auth/otp/activate", headers=bearer(mfa), json={"code": pyotp.TOTP(secret).now()}
    )
    assert activated.status_code == 200, activated.get_json()
    return secret, activated.get_json()["recovery_codes"]


def _sign_in(mfa: str, code: str) -> Callable[[Any], Any]:
    device = {"name": "Pixel de garde", "platform": "android"}
    return lambda client: client.post(
        "/api/v1/auth/otp", headers=bearer(mfa), json={"code": code, "device": device}
    )


def _live_devices(services) -> int:
    with services.sessions() as db:
        return db.scalar(select(func.count()).select_from(Device))


def _user(services) -> User:
    with services.sessions() as db:
        return db.scalar(select(User).where(User.username == "alice"))


def test_one_totp_code_sent_in_parallel_opens_one_session(app, client, services) -> None:
    secret, _codes = _enrolled(client, services)
    mfa = _mfa_token(client)
    code = pyotp.TOTP(secret).at(time.time() + 30)  # the step after activation's
    answers = _all_at_once(app, PARALLEL, _sign_in(mfa, code))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [401] * (PARALLEL - 1), [a.get_json() for a in answers]
    assert _live_devices(services) == 1


def test_one_recovery_code_sent_in_parallel_opens_one_session(app, client, services) -> None:
    _secret, codes = _enrolled(client, services)
    mfa = _mfa_token(client)
    answers = _all_at_once(app, PARALLEL, _sign_in(mfa, codes[0]))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [401] * (PARALLEL - 1), [a.get_json() for a in answers]
    assert _live_devices(services) == 1
    with services.sessions() as db:
        used = db.scalar(select(func.count()).where(RecoveryCode.used_at.is_not(None)))
    assert used == 1


def test_ten_wrong_codes_in_parallel_lock_the_account_once(app, client, services) -> None:
    _enrolled(client, services)
    mfa = _mfa_token(client)
    answers = _all_at_once(app, 10, _sign_in(mfa, "000000"))
    codes = sorted(a.get_json()["code"] for a in answers)
    # Four wrong codes are counted, the fifth locks, and the rest find the account locked.
    assert codes == ["locked"] * 6 + ["otp_invalid"] * 4, codes
    user = _user(services)
    assert user.lockouts == 1 and user.failed_otp_count == 0
    assert user.locked_until is not None
    assert _mfa_login_code(client) == "locked"


def _mfa_login_code(client) -> str:
    return client.post(
        "/api/v1/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD}
    ).get_json()["code"]


def test_one_enrolment_code_sent_in_parallel_activates_once(app, client, services) -> None:
    create_user(services, "alice")
    mfa = _mfa_token(client)
    secret = client.post("/api/v1/auth/otp/enroll", headers=bearer(mfa)).get_json()["secret"]
    code = pyotp.TOTP(secret).now()
    answers = _all_at_once(
        app,
        PARALLEL,
        lambda c: c.post("/api/v1/auth/otp/activate", headers=bearer(mfa), json={"code": code}),
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses[0] == 200 and statuses.count(200) == 1, [a.get_json() for a in answers]
    with services.sessions() as db:
        assert db.scalar(select(func.count()).select_from(RecoveryCode)) == 10
