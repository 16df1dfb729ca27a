"""Signing in with Pro Santé Connect from the web client, in Chromium, against the real
OpenID provider fixture (oidc-provider, configured as PSC) and a gateway that lists it."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
from harness import Gateway, running_gateway
from playwright.sync_api import expect

from devtools.oidc_provider import OidcProvider
from tests.oidc.support import new_rpps, psc_claims
from tests.support import free_port

NATIONAL_ID = new_rpps()


@pytest.fixture(scope="module")
def psc_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("web-psc")
    port = free_port()
    secret = secrets.token_urlsafe(32)
    client = {
        "client_id": "estafette-web-psc",
        "client_secret": secret,
        "redirect_uris": [f"http://127.0.0.1:{port}/api/v1/auth/oidc/psc/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    }
    # The provider's interaction page signs this professional in by itself (default_login).
    provider = OidcProvider(
        root / "provider",
        clients=[client],
        accounts={NATIONAL_ID: psc_claims(NATIONAL_ID)},
        default_login={"account": NATIONAL_ID, "amr": ["mfa"]},
    )
    with provider:
        (root / "psc.secret").write_text(secret)
        described = {
            "psc": {
                "kind": "psc",
                "issuer": provider.issuer,
                "client_id": client["client_id"],
                "client_secret_file": str(root / "psc.secret"),
                "jit_provisioning": True,  # first sign-in makes the account
            }
        }
        (root / "providers.json").write_text(json.dumps(described))
        settings = {
            "ESTAFETTE_OIDC_PROVIDERS": str(root / "providers.json"),
            "ESTAFETTE_OIDC_REDIRECT_URIS": f"http://127.0.0.1:{port}/",
        }
        with running_gateway(root, [], settings=settings, port=port) as gateway:
            yield gateway


def test_a_professional_signs_in_with_pro_sante_connect(psc_gateway, browser):
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    page.goto(psc_gateway.base_url + "/")

    page.get_by_role("button", name="Se connecter avec Pro Santé Connect").click()

    # Through the gateway and the provider, back to the app: signed in, the code gone.
    expect(page.locator("#pane-mailboxes")).to_be_visible(timeout=20_000)
    assert "code=" not in page.url and "state=" not in page.url
    # The session is kept as the password path keeps it: a reload stays signed in.
    page.reload()
    expect(page.locator("#pane-mailboxes")).to_be_visible(timeout=20_000)
    context.close()
