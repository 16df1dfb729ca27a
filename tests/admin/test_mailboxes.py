"""Admin: mailboxes of the four kinds. Secrets go in encrypted and never come out; every
change is audited with before/after and secrets masked."""

from __future__ import annotations

import base64
import io
import json
import logging

from sqlalchemy import select, text

from backend.storage.models import AuditRecord, Mailbox
from devtools.pki import make_ca
from tests.support import body

CANARY_SECRET = "canary-imap-secret-7f3e9a"
CANARY_PASSPHRASE = "canary-p12-passphrase-41c2"


def _mailbox_body(**overrides) -> dict:
    payload = {
        "address": "secretariat.cardio@chu-test.mssante.fr",
        "kind": "ORG",
        "display_name": "Secrétariat cardiologie",
        "imap": {
            "host": "imap.chu-test.mssante.fr",
            "port": 993,
            "security": "tls",
            "auth": "password",
            "username": "secretariat.cardio",
            "secret": CANARY_SECRET,
        },
        "smtp": {
            "host": "smtp.chu-test.mssante.fr",
            "port": 465,
            "security": "tls",
            "auth": "password",
            "secret": CANARY_SECRET,
        },
    }
    payload.update(overrides)
    return payload


def _p12(passphrase: str, **kwargs) -> str:
    ca = make_ca("Fake IGC Santé")
    issued = ca.issue_client_cert("CN=Logiciel DPI,O=CHU Test", **kwargs)
    return base64.b64encode(issued.to_pkcs12(passphrase.encode())).decode()


def _bytes(value: bytes | str) -> bytes:
    return bytes(value) if not isinstance(value, str) else value.encode()


def _audit(services, action: str) -> list[AuditRecord]:
    with services.sessions() as db:
        return list(db.scalars(select(AuditRecord).where(AuditRecord.action == action)))


def test_a_mailbox_is_created_with_its_settings_and_its_secrets_are_never_returned(
    client, services, admin, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    created = client.post("/api/v1/admin/mailboxes", headers=admin.headers, json=_mailbox_body())
    assert created.status_code == 201, body(created)
    mailbox = body(created)
    assert mailbox["imap"] == {
        "host": "imap.chu-test.mssante.fr",
        "port": 993,
        "security": "tls",
        "auth": "password",
        "username": "secretariat.cardio",
        "secret_set": True,
        "certificate_set": False,
        "token_url": None,
        "client_id": None,
    }
    assert mailbox["smtp"]["secret_set"] is True
    responses = [
        created,
        client.get(f"/api/v1/admin/mailboxes/{mailbox['id']}", headers=admin.headers),
        client.get("/api/v1/admin/mailboxes", headers=admin.headers),
        client.get("/api/v1/admin/audit", headers=admin.headers),
        client.get("/api/v1/admin/audit/export", headers=admin.headers),
    ]
    for response in responses:
        assert response.status_code == 200 or response.status_code == 201
        assert CANARY_SECRET not in response.get_data(as_text=True)
    assert CANARY_SECRET not in caplog.text
    with services.engine.connect() as conn:
        raw = conn.execute(text("SELECT imap_secret, smtp_secret FROM mailboxes")).one()
        dumped = conn.execute(text("SELECT details FROM audit_records")).scalars().all()
    assert all(CANARY_SECRET.encode() not in _bytes(v) for v in raw)  # encrypted at rest
    assert all(CANARY_SECRET not in (d or "") for d in dumped)
    [record] = _audit(services, "admin.mailbox_create")
    details = json.loads(record.details)
    assert details["after.imap.secret"] == "set" and details["after.kind"] == "ORG"


def test_every_kind_can_be_created_and_bad_settings_are_field_errors(client, admin) -> None:
    for kind in ("PER", "ORG", "APP", "CAB"):
        payload = _mailbox_body(address=f"{kind.lower()}@chu-test.mssante.fr", kind=kind)
        assert (
            client.post("/api/v1/admin/mailboxes", headers=admin.headers, json=payload).status_code
            == 201
        )
    bad = _mailbox_body(kind="XYZ")
    bad["imap"] = {**bad["imap"], "security": "none", "port": 0}
    refused = client.post("/api/v1/admin/mailboxes", headers=admin.headers, json=bad)
    assert refused.status_code == 422
    assert set(body(refused)["errors"]) == {"kind", "imap"}
    again = client.post(
        "/api/v1/admin/mailboxes",
        headers=admin.headers,
        json=_mailbox_body(address="per@chu-test.mssante.fr"),
    )
    assert again.status_code == 409


def test_an_app_mailbox_takes_a_p12_that_is_stored_encrypted(client, services, admin) -> None:
    p12 = _p12(CANARY_PASSPHRASE)
    payload = _mailbox_body(address="dpi@chu-test.mssante.fr", kind="APP")
    payload["imap"] = {
        "host": "imap.chu-test.mssante.fr",
        "port": 993,
        "security": "tls",
        "auth": "certificate",
        "secret": CANARY_PASSPHRASE,
        "certificate": p12,
    }
    created = client.post("/api/v1/admin/mailboxes", headers=admin.headers, json=payload)
    assert created.status_code == 201, body(created)
    assert body(created)["imap"]["certificate_set"] is True
    text_out = created.get_data(as_text=True)
    assert p12[:40] not in text_out and CANARY_PASSPHRASE not in text_out
    with services.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT imap_certificate FROM mailboxes WHERE address = 'dpi@chu-test.mssante.fr'")
        ).scalar_one()
    assert base64.b64decode(p12) not in _bytes(stored)


def test_an_xoauth2_mailbox_needs_its_token_endpoint_and_client_id(client, admin) -> None:
    payload = _mailbox_body(address="ide@chu-test.mssante.fr", kind="PER")
    payload["imap"] = {**payload["imap"], "auth": "xoauth2", "secret": "client-secret"}
    refused = client.post("/api/v1/admin/mailboxes", headers=admin.headers, json=payload)
    assert refused.status_code == 422 and "imap.token_url" in body(refused)["errors"]
    payload["imap"] |= {"token_url": "https://psc.example/token", "client_id": "estafette"}
    created = client.post("/api/v1/admin/mailboxes", headers=admin.headers, json=payload)
    assert created.status_code == 201, body(created)
    imap = body(created)["imap"]
    assert (imap["token_url"], imap["client_id"], imap["secret_set"]) == (
        "https://psc.example/token",
        "estafette",
        True,
    )


def test_a_p12_the_passphrase_cannot_open_is_refused(client, admin) -> None:
    payload = _mailbox_body(address="dpi2@chu-test.mssante.fr", kind="APP")
    payload["imap"] = {
        "host": "imap.x",
        "port": 993,
        "security": "tls",
        "auth": "certificate",
        "secret": "wrong passphrase",
        "certificate": _p12("right passphrase"),
    }
    refused = client.post("/api/v1/admin/mailboxes", headers=admin.headers, json=payload)
    assert refused.status_code == 422 and "imap.certificate" in body(refused)["errors"]
    not_base64 = {**payload, "imap": {**payload["imap"], "certificate": "%%%"}}
    refused = client.post("/api/v1/admin/mailboxes", headers=admin.headers, json=not_base64)
    assert refused.status_code == 422


def test_a_p12_can_be_uploaded_as_multipart_and_restarts_sync(client, services, admin) -> None:
    mailbox = body(
        client.post("/api/v1/admin/mailboxes", headers=admin.headers, json=_mailbox_body())
    )
    p12 = base64.b64decode(_p12(CANARY_PASSPHRASE))
    uploaded = client.put(
        f"/api/v1/admin/mailboxes/{mailbox['id']}/certificate",
        headers=admin.headers,
        data={"certificate": (io.BytesIO(p12), "dpi.p12"), "passphrase": CANARY_PASSPHRASE},
        content_type="multipart/form-data",
    )
    assert uploaded.status_code == 200, body(uploaded)
    after = body(uploaded)
    assert after["imap"]["certificate_set"] is True
    assert after["sync"]["settings_version"] == mailbox["sync"]["settings_version"] + 1
    assert CANARY_PASSPHRASE not in uploaded.get_data(as_text=True)
    wrong = client.put(
        f"/api/v1/admin/mailboxes/{mailbox['id']}/certificate",
        headers=admin.headers,
        data={"certificate": (io.BytesIO(p12), "dpi.p12"), "passphrase": "wrong"},
        content_type="multipart/form-data",
    )
    assert wrong.status_code == 422 and "imap.certificate" in body(wrong)["errors"]
    [record, *_] = _audit(services, "admin.mailbox_update")
    details = json.loads(record.details)
    assert details["after.imap.certificate"] == "set" and CANARY_PASSPHRASE not in record.details


def test_a_settings_change_bumps_the_version_and_is_audited_with_secrets_masked(
    client, services, admin
) -> None:
    mailbox = body(
        client.post("/api/v1/admin/mailboxes", headers=admin.headers, json=_mailbox_body())
    )
    patched = client.patch(
        f"/api/v1/admin/mailboxes/{mailbox['id']}",
        headers=admin.headers,
        json={"imap": {"port": 143, "security": "starttls", "secret": "another-secret-value"}},
    )
    assert patched.status_code == 200, body(patched)
    after = body(patched)
    assert after["imap"]["port"] == 143 and after["imap"]["security"] == "starttls"
    assert after["sync"]["settings_version"] == mailbox["sync"]["settings_version"] + 1
    [record] = _audit(services, "admin.mailbox_update")
    details = json.loads(record.details)
    assert details == {
        "before.imap.port": 993,
        "after.imap.port": 143,
        "before.imap.security": "tls",
        "after.imap.security": "starttls",
        "before.imap.secret": "set",
        "after.imap.secret": "replaced",
        "changed": 3,
        "sync_restarted": True,
    }
    assert "another-secret-value" not in record.details


def test_a_display_name_change_does_not_restart_sync(client, admin) -> None:
    mailbox = body(
        client.post("/api/v1/admin/mailboxes", headers=admin.headers, json=_mailbox_body())
    )
    patched = body(
        client.patch(
            f"/api/v1/admin/mailboxes/{mailbox['id']}",
            headers=admin.headers,
            json={"display_name": "Secrétariat"},
        )
    )
    assert patched["sync"]["settings_version"] == mailbox["sync"]["settings_version"]


def test_switching_to_certificate_auth_without_a_p12_is_refused(client, admin) -> None:
    mailbox = body(
        client.post("/api/v1/admin/mailboxes", headers=admin.headers, json=_mailbox_body())
    )
    refused = client.patch(
        f"/api/v1/admin/mailboxes/{mailbox['id']}",
        headers=admin.headers,
        json={"imap": {"auth": "certificate"}},
    )
    assert refused.status_code == 422 and "imap.certificate" in body(refused)["errors"]


def test_deleting_a_mailbox_removes_it_and_is_audited(client, services, admin) -> None:
    mailbox = body(
        client.post("/api/v1/admin/mailboxes", headers=admin.headers, json=_mailbox_body())
    )
    url = f"/api/v1/admin/mailboxes/{mailbox['id']}"
    assert client.delete(url, headers=admin.headers).status_code == 204
    assert client.get(url, headers=admin.headers).status_code == 404
    with services.sessions() as db:
        assert db.scalar(select(Mailbox).where(Mailbox.public_id == mailbox["id"])) is None
    [record] = _audit(services, "admin.mailbox_delete")
    assert record.mailbox == mailbox["id"]
