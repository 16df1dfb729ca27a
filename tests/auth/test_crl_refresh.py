"""`flask crl refresh`: CRLs downloaded atomically into var/crl/, and used at once."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from backend import crl
from backend.storage.database import session_scope
from backend.storage.models import User
from devtools.pki import CertificateAuthority, make_ca
from tests.factories import create_user

PROXY = "10.9.8.7"
RPPS_ID = "810001234567"
CPS_POLICY = "1.2.250.1.71.99.1"


class CrlServer:
    """A real HTTP server publishing bytes at paths, as a CA's CRL site does."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        files = self.files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def __enter__(self) -> CrlServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def crl_site() -> Iterator[CrlServer]:
    with CrlServer() as server:
        yield server


@pytest.fixture
def pki(crl_site: CrlServer) -> tuple[CertificateAuthority, CertificateAuthority]:
    """Root and issuing CA; the issuing CA's certificate names the root's CRL."""
    root = make_ca("TEST AC RACINE IGC-SANTE", organization="ASIP-SANTE")
    issuing = root.issue_intermediate(
        "TEST AC IGC-SANTE STANDARD PERSONNES", crl_urls=[crl_site.url("/root.crl")]
    )
    return root, issuing


@pytest.fixture
def refresh_app(make_app, pki, crl_site: CrlServer, tmp_path: Path):
    root, issuing = pki
    bundle = tmp_path / "cards.pem"
    bundle.write_bytes(issuing.cert_pem() + root.cert_pem())
    app = make_app(
        ESTAFETTE_CARD_CA_BUNDLE=str(bundle),
        ESTAFETTE_CRL_URLS=crl_site.url("/issuing.crl"),
        ESTAFETTE_TRUSTED_PROXIES=PROXY,
    )
    yield app
    app.extensions["estafette"].engine.dispose()


def _publish(crl_site: CrlServer, pki) -> None:
    root, issuing = pki
    crl_site.files["/root.crl"] = root.crl().public_bytes(serialization.Encoding.DER)
    crl_site.files["/issuing.crl"] = issuing.crl_pem()


def _refresh(app):
    return app.test_cli_runner().invoke(args=["crl", "refresh"])


def _sign_in(app, card):
    pem = card.certificate.public_bytes(serialization.Encoding.PEM).decode()
    return app.test_client().post(
        "/api/v1/auth/cps",
        json={"device": {"name": "Poste de soins", "platform": "web"}},
        headers={"X-Client-Cert": quote(pem), "X-Client-Verify": "SUCCESS"},
        environ_base={"REMOTE_ADDR": PROXY},
    )


def _downloaded(app) -> dict[str, x509.CertificateRevocationList]:
    directory = crl.crl_dir(app.extensions["estafette"].settings.var_dir)
    return {p.name: crl.parse_crl(p.read_bytes()) for p in directory.glob("*.crl")}


def test_refresh_downloads_configured_and_distribution_point_crls(
    refresh_app, pki, crl_site
) -> None:
    _publish(crl_site, pki)
    result = _refresh(refresh_app)
    assert result.exit_code == 0, result.output
    root, issuing = pki
    issuers = sorted(c.issuer.rfc4514_string() for c in _downloaded(refresh_app).values())
    assert issuers == sorted([root.name.rfc4514_string(), issuing.name.rfc4514_string()])

    combined = crl.crl_dir(refresh_app.extensions["estafette"].settings.var_dir)
    pems = (combined / crl.COMBINED_NAME).read_bytes()
    assert pems.count(b"-----BEGIN X509 CRL-----") == 2


def test_a_card_signs_in_once_the_crls_are_refreshed_and_not_before(
    refresh_app, pki, crl_site
) -> None:
    services = refresh_app.extensions["estafette"]
    create_user(services, "dr.martin")
    with session_scope(services.sessions) as db:
        db.scalar(select(User).where(User.username == "dr.martin")).cps_id = RPPS_ID
    _root, issuing = pki
    card = issuing.issue_client_cert(
        {"CN": f"{RPPS_ID}/MARTIN Camille", "serialNumber": RPPS_ID}, policies=(CPS_POLICY,)
    )

    assert _sign_in(refresh_app, card).get_json()["code"] == "card_revocation_unknown"
    _publish(crl_site, pki)
    assert _refresh(refresh_app).exit_code == 0
    assert _sign_in(refresh_app, card).status_code == 200

    issuing.revoke(card)
    _publish(crl_site, pki)
    assert _refresh(refresh_app).exit_code == 0
    assert _sign_in(refresh_app, card).get_json()["code"] == "card_revoked"


def test_a_failed_download_keeps_the_previous_copy_and_exits_1(refresh_app, pki, crl_site) -> None:
    _publish(crl_site, pki)
    assert _refresh(refresh_app).exit_code == 0
    before = _downloaded(refresh_app)

    crl_site.files["/issuing.crl"] = b"<html>maintenance</html>"  # not a CRL
    del crl_site.files["/root.crl"]  # 404
    result = _refresh(refresh_app)
    assert result.exit_code == 1
    assert "FAILED" in result.output
    after = _downloaded(refresh_app)
    assert after.keys() == before.keys()
    assert all(
        after[name].public_bytes(serialization.Encoding.DER)
        == c.public_bytes(serialization.Encoding.DER)
        for name, c in before.items()
    )
    directory = crl.crl_dir(refresh_app.extensions["estafette"].settings.var_dir)
    assert not list(directory.glob(".incoming-*")), "no temporary file is left behind"
