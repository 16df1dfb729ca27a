"""Admin: users. Creating, disabling, resetting a password or a TOTP, deleting — audited."""

from __future__ import annotations

import json

from sqlalchemy import select

from backend.storage.models import AuditRecord
from tests.admin.conftest import sign_in
from tests.support import DEFAULT_PASSWORD, body


def _last_audit(services, action: str) -> AuditRecord:
    with services.sessions() as db:
        return db.scalar(
            select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.id.desc())
        )


def test_admin_creates_lists_and_reads_users(client, services, admin) -> None:
    created = client.post(
        "/api/v1/admin/users",
        headers=admin.headers,
        json={"username": "Nurse.Joy", "password": "a long enough password", "display_name": "J"},
    )
    assert created.status_code == 201, body(created)
    user = body(created)
    assert user["username"] == "nurse.joy" and user["totp_active"] is False
    assert "password" not in user and "password_hash" not in user
    assert user["id"].startswith("usr_")

    listed = body(client.get("/api/v1/admin/users?limit=1", headers=admin.headers))
    assert len(listed["items"]) == 1 and listed["next"]
    rest = body(
        client.get(f"/api/v1/admin/users?limit=50&cursor={listed['next']}", headers=admin.headers)
    )
    assert {u["id"] for u in listed["items"] + rest["items"]} >= {user["id"], admin.user_id}
    assert rest["next"] is None

    fetched = client.get(f"/api/v1/admin/users/{user['id']}", headers=admin.headers)
    assert body(fetched)["username"] == "nurse.joy"
    record = _last_audit(services, "admin.user_create")
    assert (record.actor, record.target, record.device) == (
        admin.user_id,
        user["id"],
        admin.device_id,
    )


def test_a_duplicate_or_weak_user_is_refused_with_a_code(client, admin) -> None:
    weak = client.post(
        "/api/v1/admin/users", headers=admin.headers, json={"username": "x", "password": "short"}
    )
    assert weak.status_code == 422 and "password" in body(weak)["errors"]
    first = {"username": "dup", "password": "a long enough password"}
    assert client.post("/api/v1/admin/users", headers=admin.headers, json=first).status_code == 201
    again = client.post("/api/v1/admin/users", headers=admin.headers, json=first)
    assert again.status_code == 409 and body(again)["code"] == "conflict"


def test_disabling_a_user_ends_their_sessions_at_once(client, services, admin, member) -> None:
    assert client.get("/api/v1/mailboxes", headers=member.headers).status_code == 200
    patched = client.patch(
        f"/api/v1/admin/users/{member.user_id}", headers=admin.headers, json={"disabled": True}
    )
    assert patched.status_code == 200 and body(patched)["disabled"] is True
    assert client.get("/api/v1/mailboxes", headers=member.headers).status_code == 401
    login = client.post(
        "/api/v1/auth/login", json={"username": member.username, "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 401
    details = json.loads(_last_audit(services, "admin.user_update").details)
    assert details == {"before.disabled": False, "after.disabled": True, "sessions_revoked": 1}


def test_a_password_reset_ends_every_session_and_is_audited_without_the_password(
    client, services, admin
) -> None:
    user = sign_in(client, services)
    second = user.authenticator.sign_in(
        client, user.username, device={"name": "b", "platform": "ios"}
    )
    new_password = "the brand new password 42"
    patched = client.patch(
        f"/api/v1/admin/users/{user.user_id}",
        headers=admin.headers,
        json={"password": new_password},
    )
    assert patched.status_code == 200
    for tokens in (user.tokens, second):
        response = client.get(
            "/api/v1/mailboxes", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert response.status_code == 401
    old = client.post(
        "/api/v1/auth/login", json={"username": user.username, "password": DEFAULT_PASSWORD}
    )
    assert old.status_code == 401
    new = client.post(
        "/api/v1/auth/login", json={"username": user.username, "password": new_password}
    )
    assert new.status_code == 200
    record = _last_audit(services, "admin.user_update")
    assert new_password not in (record.details or "")
    assert json.loads(record.details) == {"password_reset": True, "sessions_revoked": 2}


def test_a_totp_reset_ends_sessions_and_asks_for_enrolment_again(client, services, admin) -> None:
    user = sign_in(client, services)
    patched = client.patch(
        f"/api/v1/admin/users/{user.user_id}", headers=admin.headers, json={"reset_otp": True}
    )
    assert patched.status_code == 200 and body(patched)["totp_active"] is False
    assert client.get("/api/v1/mailboxes", headers=user.headers).status_code == 401
    login = client.post(
        "/api/v1/auth/login", json={"username": user.username, "password": DEFAULT_PASSWORD}
    )
    assert body(login)["enrollment_required"] is True


def test_removing_the_admin_role_takes_effect_on_the_next_call(client, services, admin) -> None:
    other = sign_in(client, services, admin=True)
    assert client.get("/api/v1/admin/users", headers=other.headers).status_code == 200
    demoted = client.patch(
        f"/api/v1/admin/users/{other.user_id}", headers=admin.headers, json={"is_admin": False}
    )
    assert demoted.status_code == 200 and body(demoted)["is_admin"] is False
    assert client.get("/api/v1/admin/users", headers=other.headers).status_code == 403
    assert client.get("/api/v1/mailboxes", headers=other.headers).status_code == 200


def test_an_admin_cannot_disable_or_delete_themselves(client, admin) -> None:
    url = f"/api/v1/admin/users/{admin.user_id}"
    disabled = client.patch(url, headers=admin.headers, json={"disabled": True})
    assert disabled.status_code == 409
    assert client.delete(url, headers=admin.headers).status_code == 409
    assert client.get(url, headers=admin.headers).status_code == 200


def test_deleting_a_user_removes_the_account_and_its_sessions(client, services, admin) -> None:
    user = sign_in(client, services)
    deleted = client.delete(f"/api/v1/admin/users/{user.user_id}", headers=admin.headers)
    assert deleted.status_code == 204
    assert client.get("/api/v1/mailboxes", headers=user.headers).status_code == 401
    gone = client.get(f"/api/v1/admin/users/{user.user_id}", headers=admin.headers)
    assert gone.status_code == 404 and body(gone)["code"] == "not_found"
    assert _last_audit(services, "admin.user_delete").target == user.user_id


def test_unknown_fields_and_ids_get_problem_details(client, admin) -> None:
    unknown = client.patch(
        "/api/v1/admin/users/usr_nope", headers=admin.headers, json={"disabled": True}
    )
    assert unknown.status_code == 404
    bad = client.patch(
        f"/api/v1/admin/users/{admin.user_id}", headers=admin.headers, json={"is_root": True}
    )
    assert bad.status_code == 422 and body(bad)["code"] == "validation_error"
