"""Admin calls are for administrators with a fresh second factor, and nobody else."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from backend.storage.models import Device, utcnow
from tests.support import body

ADMIN_CALLS = [
    ("get", "/api/v1/admin/users"),
    ("post", "/api/v1/admin/users"),
    ("get", "/api/v1/admin/users/usr_x"),
    ("patch", "/api/v1/admin/users/usr_x"),
    ("delete", "/api/v1/admin/users/usr_x"),
    ("get", "/api/v1/admin/mailboxes"),
    ("post", "/api/v1/admin/mailboxes"),
    ("get", "/api/v1/admin/mailboxes/mbx_x"),
    ("patch", "/api/v1/admin/mailboxes/mbx_x"),
    ("delete", "/api/v1/admin/mailboxes/mbx_x"),
    ("put", "/api/v1/admin/mailboxes/mbx_x/members/usr_x"),
    ("delete", "/api/v1/admin/mailboxes/mbx_x/members/usr_x"),
    ("get", "/api/v1/admin/devices"),
    ("delete", "/api/v1/admin/devices/dev_x"),
    ("get", "/api/v1/admin/audit"),
    ("get", "/api/v1/admin/audit/verify"),
    ("get", "/api/v1/admin/audit/export"),
    ("get", "/api/v1/admin/certificates"),
]

VALID_BODIES = {
    ("post", "/api/v1/admin/users"): {"username": "x", "password": "a long enough password"},
    ("patch", "/api/v1/admin/users/usr_x"): {"disabled": True},
    ("post", "/api/v1/admin/mailboxes"): {
        "address": "a@b.mssante.fr",
        "kind": "PER",
        "imap": {"host": "h", "port": 993, "security": "tls", "auth": "password"},
    },
    ("patch", "/api/v1/admin/mailboxes/mbx_x"): {"display_name": "x"},
    ("put", "/api/v1/admin/mailboxes/mbx_x/members/usr_x"): {"role": "delegate"},
}


def _call(client, method: str, path: str, headers: dict):
    return getattr(client, method)(path, headers=headers, json=VALID_BODIES.get((method, path)))


def test_a_non_admin_gets_403_on_every_admin_call(client, member) -> None:
    for method, path in ADMIN_CALLS:
        response = _call(client, method, path, member.headers)
        assert response.status_code == 403, (method, path, body(response))
        assert body(response)["code"] == "forbidden"


def test_admin_calls_need_a_session(client) -> None:
    for method, path in ADMIN_CALLS:
        response = _call(client, method, path, {})
        assert response.status_code == 401, (method, path)


def _age_second_factor(services, device_id: str, minutes: int, method: str = "totp") -> None:
    with services.engine.begin() as conn:
        conn.execute(
            update(Device)
            .where(Device.public_id == device_id)
            .values(authenticated_at=utcnow() - timedelta(minutes=minutes), auth_method=method)
        )


def test_a_stale_second_factor_is_refused_with_a_clear_code(client, services, admin) -> None:
    _age_second_factor(services, admin.device_id, minutes=11)
    response = client.get("/api/v1/admin/users", headers=admin.headers)
    assert response.status_code == 401
    assert body(response)["code"] == "fresh_mfa_required"
    assert "/auth/otp/verify" in body(response)["detail"]


def test_a_fresh_totp_code_on_the_session_reopens_admin_calls(client, services, admin) -> None:
    _age_second_factor(services, admin.device_id, minutes=30)
    verified = client.post(
        "/api/v1/auth/otp/verify",
        headers=admin.headers,
        json={"code": admin.authenticator.next_code()},
    )
    assert verified.status_code == 204, body(verified)
    assert client.get("/api/v1/admin/users", headers=admin.headers).status_code == 200


def test_a_wrong_code_does_not_refresh_the_second_factor(client, services, admin) -> None:
    _age_second_factor(services, admin.device_id, minutes=30)
    refused = client.post("/api/v1/auth/otp/verify", headers=admin.headers, json={"code": "000000"})
    assert refused.status_code == 401 and body(refused)["code"] == "otp_invalid"
    response = client.get("/api/v1/admin/users", headers=admin.headers)
    assert body(response)["code"] == "fresh_mfa_required"


def test_a_cps_card_session_counts_as_a_fresh_second_factor(client, services, admin) -> None:
    _age_second_factor(services, admin.device_id, minutes=90, method="cps")
    assert client.get("/api/v1/admin/users", headers=admin.headers).status_code == 200


def test_a_second_factor_within_ten_minutes_is_fresh(client, services, admin) -> None:
    _age_second_factor(services, admin.device_id, minutes=9)
    assert client.get("/api/v1/admin/users", headers=admin.headers).status_code == 200
