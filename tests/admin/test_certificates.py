"""Certificates: every client .p12 and CA with its expiry; under 30 days is `warning`,
expired is `error`, and both are a Prometheus gauge labelled by opaque ids only."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from backend.certificates import status_of
from devtools.pki import make_ca
from tests.admin.conftest import sign_in
from tests.support import body

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def ca_bundle(tmp_path):
    return make_ca("Fake IGC Santé racine", days=3650).write_cert(tmp_path / "ca.pem")


@pytest.fixture
def app(make_app, ca_bundle):
    application = make_app(ESTAFETTE_CA_BUNDLE=str(ca_bundle))
    yield application
    application.extensions["estafette"].engine.dispose()


def _app_mailbox(client, admin, name: str, not_after: dt.datetime) -> str:
    issuer = make_ca("Fake IGC Santé Organisations")
    issued = issuer.issue_client_cert(f"CN={name},O=CHU Test", not_after=not_after)
    payload = {
        "address": f"{name}@chu-test.mssante.fr",
        "kind": "APP",
        "imap": {
            "host": "imap.chu-test.mssante.fr",
            "port": 993,
            "security": "tls",
            "auth": "certificate",
            "secret": "p12 passphrase",
            "certificate": base64.b64encode(issued.to_pkcs12(b"p12 passphrase")).decode(),
        },
    }
    created = client.post("/api/v1/admin/mailboxes", headers=admin.headers, json=payload)
    assert created.status_code == 201, body(created)
    return body(created)["id"]


def test_each_certificate_shows_its_expiry_and_status(client, services) -> None:
    admin = sign_in(client, services, admin=True)
    fine = _app_mailbox(client, admin, "dpi", NOW + dt.timedelta(days=200))
    soon = _app_mailbox(client, admin, "labo", NOW + dt.timedelta(days=12, hours=1))
    gone = _app_mailbox(client, admin, "radio", NOW - dt.timedelta(days=3))

    listed = client.get("/api/v1/admin/certificates", headers=admin.headers)
    assert listed.status_code == 200
    by_mailbox = {c["mailbox_id"]: c for c in body(listed) if c["kind"] == "client"}
    assert {m: (c["status"], c["days_left"]) for m, c in by_mailbox.items()} == {
        fine: ("ok", 199),
        soon: ("warning", 12),
        gone: ("error", -3),
    }
    assert by_mailbox[fine]["subject"] == "CN=dpi,O=CHU Test"
    assert by_mailbox[fine]["issuer"] == "CN=Fake IGC Santé Organisations"
    assert by_mailbox[fine]["not_after"].startswith(str((NOW + dt.timedelta(days=200)).date()))
    [ca] = [c for c in body(listed) if c["kind"] == "ca"]
    assert ca["subject"] == "CN=Fake IGC Santé racine" and ca["status"] == "ok"
    assert ca["id"].startswith("ca:")

    metrics = client.get("/metrics").get_data(as_text=True)
    gauge = [
        line for line in metrics.splitlines() if line.startswith("estafette_certificate_days_left{")
    ]
    assert (
        f'estafette_certificate_days_left{{certificate="{gone}:client",kind="client"}} -3.0'
        in gauge
    )
    assert (
        f'estafette_certificate_days_left{{certificate="{soon}:client",kind="client"}} 12.0'
        in gauge
    )
    assert any(f'certificate="{ca["id"]}"' in line for line in gauge)
    assert "chu-test" not in "\n".join(gauge) and "CN=" not in "\n".join(gauge)


@pytest.mark.parametrize(
    ("left", "expected"),
    [
        (dt.timedelta(days=30, seconds=1), (30, "ok")),
        (dt.timedelta(days=29, hours=23), (29, "warning")),
        (dt.timedelta(seconds=30), (0, "warning")),
        (dt.timedelta(seconds=-1), (0, "error")),
        (-dt.timedelta(days=3, hours=2), (-3, "error")),
    ],
)
def test_the_thresholds_are_thirty_days_and_expiry(left, expected) -> None:
    assert status_of(NOW + left, NOW) == expected
