"""CPS card sign-in: only through the TLS proxy, and only with a card we can verify again."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from backend.storage.database import session_scope
from backend.storage.models import AuditRecord, User
from devtools.pki import CertificateAuthority, make_ca
from tests.factories import create_user
from tests.support import bearer

PROXY = "10.9.8.7"
RPPS_ID = "810001234567"
# A throwaway policy under the ANS arc, standing for IGC Santé's CPS authentication PC.
CPS_POLICY = "1.2.250.1.71.99.1"


@pytest.fixture(scope="module")
def igc_sante() -> CertificateAuthority:
    """A throwaway CA shaped like IGC Santé's personal-certificate authority."""
    return make_ca("TEST AC IGC-SANTE ELEMENTAIRE PERSONNES", organization="ASIP-SANTE")


@pytest.fixture(scope="module")
def other_ca() -> CertificateAuthority:
    return make_ca("Some Other CA", organization="Elsewhere")


@pytest.fixture
def cps_app(make_app, igc_sante, tmp_path: Path):
    bundle = igc_sante.write_cert(tmp_path / "igc-sante.pem")
    crl = igc_sante.write_crl(tmp_path / "igc-sante.crl")
    app = make_app(
        ESTAFETTE_CARD_CA_BUNDLE=str(bundle),
        ESTAFETTE_CRL=str(crl),
        ESTAFETTE_TRUSTED_PROXIES=PROXY,
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


def _card(ca: CertificateAuthority, professional_id: str = RPPS_ID, **options):
    options.setdefault("policies", (CPS_POLICY,))
    return ca.issue_client_cert(
        {"CN": f"{professional_id}/MARTIN Camille", "serialNumber": professional_id},
        **options,
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


# -- revocation is required, cards have their own CAs (security audit, issue 13) -------


def _problem_code(response) -> str:
    assert response.status_code == 401, response.get_json()
    return response.get_json()["code"]


def test_a_revoked_card_gets_its_own_problem_code(cps_app, doctor, igc_sante) -> None:
    card = _card(igc_sante)
    igc_sante.revoke(card)
    igc_sante.write_crl(cps_app.config["CRL_PATH"])
    assert _problem_code(_present(cps_app, card)) == "card_revoked"


@pytest.fixture
def two_ca_app(make_app, igc_sante, tmp_path: Path):
    """Cards from two CAs are trusted, but only the first one's CRL is configured."""
    second = make_ca("TEST AC IGC-SANTE FORT PERSONNES", organization="ASIP-SANTE")
    bundle = tmp_path / "cards.pem"
    bundle.write_bytes(igc_sante.cert_pem() + second.cert_pem())
    app = make_app(
        ESTAFETTE_CARD_CA_BUNDLE=str(bundle),
        ESTAFETTE_CRL=str(igc_sante.write_crl(tmp_path / "igc-sante.crl")),
        ESTAFETTE_TRUSTED_PROXIES=PROXY,
    )
    app.config["SECOND_CA"] = second
    yield app
    app.extensions["estafette"].engine.dispose()


def test_a_card_from_a_ca_without_a_crl_is_refused(two_ca_app, igc_sante) -> None:
    services = two_ca_app.extensions["estafette"]
    create_user(services, "dr.martin")
    with session_scope(services.sessions) as db:
        db.scalar(select(User).where(User.username == "dr.martin")).cps_id = RPPS_ID

    assert _present(two_ca_app, _card(igc_sante)).status_code == 200
    response = _present(two_ca_app, _card(two_ca_app.config["SECOND_CA"]))
    assert _problem_code(response) == "card_revocation_unknown"
    assert any('"revocation_unknown"' in r for r in _refusal_reasons(two_ca_app))


def test_a_card_is_refused_once_its_crl_is_past_next_update(cps_app, doctor, igc_sante) -> None:
    now = dt.datetime.now(dt.UTC)
    crl = igc_sante.crl(
        last_update=now - dt.timedelta(days=8), next_update=now - dt.timedelta(minutes=1)
    )
    cps_app.config["CRL_PATH"].write_bytes(crl.public_bytes(serialization.Encoding.DER))
    assert _problem_code(_present(cps_app, _card(igc_sante))) == "card_revocation_unknown"


def test_a_crl_not_signed_by_the_issuer_is_ignored(cps_app, doctor, igc_sante) -> None:
    impostor = make_ca("TEST AC IGC-SANTE ELEMENTAIRE PERSONNES", organization="ASIP-SANTE")
    assert impostor.name == igc_sante.name
    impostor.write_crl(cps_app.config["CRL_PATH"])
    assert _problem_code(_present(cps_app, _card(igc_sante))) == "card_revocation_unknown"


def test_a_card_without_the_cps_policy_is_refused(cps_app, doctor, igc_sante) -> None:
    response = _present(cps_app, _card(igc_sante, policies=("1.3.6.1.4.1.99999.1",)))
    assert _problem_code(response) == "certificate_rejected"
    response = _present(cps_app, _card(igc_sante, policies=()))
    assert _problem_code(response) == "certificate_rejected"
    assert sum('"wrong_policy"' in r for r in _refusal_reasons(cps_app)) == 2


def test_the_accepted_policies_are_configurable(make_app, igc_sante, tmp_path: Path) -> None:
    app = make_app(
        ESTAFETTE_CARD_CA_BUNDLE=str(igc_sante.write_cert(tmp_path / "ca.pem")),
        ESTAFETTE_CRL=str(igc_sante.write_crl(tmp_path / "ca.crl")),
        ESTAFETTE_CARD_POLICIES="1.2.250.1.71.4.2.1, 1.2.250.1.71.4.2.7",
        ESTAFETTE_TRUSTED_PROXIES=PROXY,
    )
    try:
        services = app.extensions["estafette"]
        create_user(services, "dr.martin")
        with session_scope(services.sessions) as db:
            db.scalar(select(User).where(User.username == "dr.martin")).cps_id = RPPS_ID
        accepted = _present(app, _card(igc_sante, policies=("1.2.250.1.71.4.2.7",)))
        assert accepted.status_code == 200, accepted.get_json()
        # Another policy under the same arc is not enough once the list is narrowed.
        refused = _present(app, _card(igc_sante, policies=("1.2.250.1.71.4.2.3",)))
        assert _problem_code(refused) == "certificate_rejected"
    finally:
        app.extensions["estafette"].engine.dispose()


def test_a_certificate_without_client_auth_usage_is_refused(cps_app, doctor, igc_sante) -> None:
    from cryptography.x509.oid import ExtendedKeyUsageOID

    signing_only = igc_sante.issue(
        {"CN": f"{RPPS_ID}/MARTIN Camille", "serialNumber": RPPS_ID},
        extended_usages=(ExtendedKeyUsageOID.EMAIL_PROTECTION,),
        policies=(CPS_POLICY,),
    )
    assert _problem_code(_present(cps_app, signing_only)) == "certificate_rejected"
    assert any('"wrong_usage"' in r for r in _refusal_reasons(cps_app))


def test_the_servers_ca_bundle_does_not_admit_cards(make_app, igc_sante, tmp_path: Path) -> None:
    """IMAP/SMTP servers and cards no longer share one trust list."""
    app = make_app(
        ESTAFETTE_CA_BUNDLE=str(igc_sante.write_cert(tmp_path / "servers.pem")),
        ESTAFETTE_CRL=str(igc_sante.write_crl(tmp_path / "ca.crl")),
        ESTAFETTE_TRUSTED_PROXIES=PROXY,
    )
    try:
        services = app.extensions["estafette"]
        create_user(services, "dr.martin")
        with session_scope(services.sessions) as db:
            db.scalar(select(User).where(User.username == "dr.martin")).cps_id = RPPS_ID
        assert _problem_code(_present(app, _card(igc_sante))) == "certificate_rejected"
        assert any('"no_trust_anchor"' in r for r in _refusal_reasons(app))
    finally:
        app.extensions["estafette"].engine.dispose()


def test_a_card_under_an_intermediate_needs_the_intermediates_crl(base_env, tmp_path: Path) -> None:
    from mobile_api import create_app

    root = make_ca("TEST AC RACINE IGC-SANTE", organization="ASIP-SANTE")
    issuing = root.issue_intermediate("TEST AC IGC-SANTE STANDARD PERSONNES")
    bundle = tmp_path / "cards.pem"
    bundle.write_bytes(issuing.cert_pem() + root.cert_pem())
    root_crl = root.write_crl(tmp_path / "root.crl")
    env = {
        **base_env,
        "ESTAFETTE_CARD_CA_BUNDLE": str(bundle),
        "ESTAFETTE_TRUSTED_PROXIES": PROXY,
    }
    app = create_app({**env, "ESTAFETTE_CRL": str(root_crl)})
    services = app.extensions["estafette"]
    create_user(services, "dr.martin")
    with session_scope(services.sessions) as db:
        db.scalar(select(User).where(User.username == "dr.martin")).cps_id = RPPS_ID
    card = _card(issuing)
    try:
        assert _problem_code(_present(app, card)) == "card_revocation_unknown"
    finally:
        app.extensions["estafette"].engine.dispose()

    issuing_crl = issuing.write_crl(tmp_path / "issuing.crl")
    app = create_app({**env, "ESTAFETTE_CRL": f"{root_crl},{issuing_crl}"})
    try:
        response = _present(app, card)
        assert response.status_code == 200, response.get_json()
    finally:
        app.extensions["estafette"].engine.dispose()


def test_a_malformed_policy_extension_is_a_refusal_not_a_crash(cps_app, doctor, igc_sante) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

    from devtools.pki import IssuedCertificate, generate_key

    key = generate_key()
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string(f"CN={RPPS_ID}/MARTIN Camille"))
        .issuer_name(igc_sante.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.CERTIFICATE_POLICIES, b"\x30\x03\x06\x01"),
            critical=False,
        )
        .sign(igc_sante.private_key, hashes.SHA256())
    )
    response = _present(cps_app, IssuedCertificate(certificate, key))
    assert _problem_code(response) == "certificate_rejected"
