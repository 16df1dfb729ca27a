"""CPS card sign-in: only through the TLS proxy, and only with a card we can verify again."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from backend.demo.pki import CertificateAuthority, make_ca
from backend.storage.database import session_scope
from backend.storage.models import AuditRecord, User
from tests.factories import create_user
from tests.support import bearer

PROXY = "10.9.8.7"
RPPS_ID = "810001234567"


@pytest.fixture(scope="module")
def igc_sante() -> CertificateAuthority:
    """A throwaway CA shaped like IGC Santé's personal-certificate authority."""
    return make_ca("TEST AC IGC-SANTE ELEMENTAIRE PERSONNES", organization="ASIP-SANTE")


@pytest.fixture(scope="module")
def other_ca() -> CertificateAuthority:
    return make_ca("Some Other CA", organization="Elsewhere")


@pytest.fixture
def cps_app(base_env, igc_sante, tmp_path: Path):
    from mobile_api import create_app

    bundle = igc_sante.write_cert(tmp_path / "igc-sante.pem")
    crl = igc_sante.write_crl(tmp_path / "igc-sante.crl")
    app = create_app(
        {
            **base_env,
            "ESTAFETTE_CA_BUNDLE": str(bundle),
            "ESTAFETTE_CRL": str(crl),
            "ESTAFETTE_TRUSTED_PROXIES": PROXY,
        }
    )
    app.config["CRL_PATH"] = crl
    yield app
    app.extensions["estafette"].engine.dispose()


@pytest.fixture
def doctor(cps_app) -> str:
    services = cps_app.extensions["estafette"]
    create_user(services, "dr.martin")
    with session_scope(services.sessions) as db:
        db.scalar(select(User).where(User.username == "dr.martin")).cps_id = RPPS_ID
    return "dr.martin"


def _card(ca: CertificateAuthority, professional_id: str = RPPS_ID, **validity):
    return ca.issue_client_cert(
        {"CN": f"{professional_id}/MARTIN Camille", "serialNumber": professional_id},
        **validity,
    )


def _present(app, card, *, peer: str = PROXY, verify: str = "SUCCESS"):
    pem = card.certificate.public_bytes(serialization.Encoding.PEM).decode()
    return app.test_client().post(
        "/api/v1/auth/cps",
        json={"device": {"name": "Poste de soins", "platform": "web"}},
        headers={"X-Client-Cert": quote(pem), "X-Client-Verify": verify},
        environ_base={"REMOTE_ADDR": peer},
    )


def _refusal_reasons(app) -> list[str]:
    with app.extensions["estafette"].sessions() as db:
        rows = db.scalars(select(AuditRecord).where(AuditRecord.action == "auth.cps"))
        return [r.details for r in rows]


def test_a_valid_card_opens_a_session(cps_app, doctor, igc_sante) -> None:
    response = _present(cps_app, _card(igc_sante))
    assert response.status_code == 200, response.get_json()
    session = response.get_json()
    devices = cps_app.test_client().get("/api/v1/devices", headers=bearer(session["access_token"]))
    assert devices.status_code == 200


def test_an_expired_card_is_rejected(cps_app, doctor, igc_sante) -> None:
    now = dt.datetime.now(dt.UTC)
    card = _card(
        igc_sante, not_before=now - dt.timedelta(days=400), not_after=now - dt.timedelta(days=1)
    )
    response = _present(cps_app, card)
    assert response.status_code == 401
    assert response.get_json()["code"] == "certificate_rejected"
    assert any('"expired"' in r for r in _refusal_reasons(cps_app))


def test_a_revoked_card_is_rejected(cps_app, doctor, igc_sante) -> None:
    card = _card(igc_sante)
    igc_sante.revoke(card)
    igc_sante.write_crl(cps_app.config["CRL_PATH"])
    response = _present(cps_app, card)
    assert response.status_code == 401
    assert any('"revoked"' in r for r in _refusal_reasons(cps_app))


def test_a_card_from_another_ca_is_rejected(cps_app, doctor, other_ca) -> None:
    response = _present(cps_app, _card(other_ca))
    assert response.status_code == 401
    assert any('"untrusted"' in r for r in _refusal_reasons(cps_app))


def test_a_valid_card_unknown_to_us_is_rejected(cps_app, doctor, igc_sante) -> None:
    response = _present(cps_app, _card(igc_sante, professional_id="810009999999"))
    assert response.status_code == 401
    assert any('"unknown_card"' in r for r in _refusal_reasons(cps_app))


def test_the_header_is_ignored_unless_it_comes_from_a_trusted_proxy(
    cps_app, doctor, igc_sante
) -> None:
    response = _present(cps_app, _card(igc_sante), peer="203.0.113.5")
    assert response.status_code == 401
    assert any('"untrusted_proxy"' in r for r in _refusal_reasons(cps_app))


def test_a_card_the_proxy_could_not_verify_is_rejected(cps_app, doctor, igc_sante) -> None:
    response = _present(cps_app, _card(igc_sante), verify="FAILED:certificate revoked")
    assert response.status_code == 401
    assert any('"no_certificate"' in r for r in _refusal_reasons(cps_app))
