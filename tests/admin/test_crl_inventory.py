"""The certificate inventory also shows the card CAs and every CRL with the time left
before its nextUpdate: past it, the CA's cards and servers are refused (fail closed)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from devtools.pki import make_ca
from tests.admin.conftest import sign_in
from tests.support import body


@pytest.fixture
def app(make_app, tmp_path):
    now = dt.datetime.now(dt.UTC)
    cards = make_ca("TEST AC IGC-SANTE PERSONNES", days=3650)
    servers = make_ca("TEST AC IGC-SANTE ORGANISATIONS", days=3650)
    lapsing = tmp_path / "cards.crl"
    lapsing.write_bytes(
        cards.crl(
            last_update=now - dt.timedelta(days=6), next_update=now + dt.timedelta(hours=20)
        ).public_bytes(Encoding.PEM)
    )
    stale = tmp_path / "servers.crl"
    stale.write_bytes(
        servers.crl(
            last_update=now - dt.timedelta(days=8), next_update=now - dt.timedelta(days=1)
        ).public_bytes(Encoding.DER)
    )
    application = make_app(
        ESTAFETTE_CA_BUNDLE=str(servers.write_cert(tmp_path / "servers.pem")),
        ESTAFETTE_CARD_CA_BUNDLE=str(cards.write_cert(tmp_path / "cards.pem")),
        ESTAFETTE_CRL=f"{lapsing},{stale}",
    )
    yield application
    application.extensions["estafette"].engine.dispose()


def test_card_cas_and_crls_are_listed_with_their_status(client, services) -> None:
    admin = sign_in(client, services, admin=True)
    listed = client.get("/api/v1/admin/certificates", headers=admin.headers)
    assert listed.status_code == 200, body(listed)
    entries = body(listed)

    [card_ca] = [c for c in entries if c["kind"] == "card-ca"]
    assert card_ca["subject"] == "CN=TEST AC IGC-SANTE PERSONNES"
    crls = {c["issuer"]: (c["status"], c["days_left"]) for c in entries if c["kind"] == "crl"}
    assert crls == {
        "CN=TEST AC IGC-SANTE PERSONNES": ("warning", 0),
        "CN=TEST AC IGC-SANTE ORGANISATIONS": ("error", -1),
    }

    crl_ids = [c["id"] for c in entries if c["kind"] == "crl"]
    gauge = client.get("/metrics").get_data(as_text=True)
    for crl_id in crl_ids:
        assert f'certificate="{crl_id}",kind="crl"' in gauge


def test_the_command_line_check_fails_on_a_stale_crl(app) -> None:
    result = app.test_cli_runner().invoke(args=["certificates", "check"])
    assert result.exit_code == 1
    assert "crl:" in result.output
