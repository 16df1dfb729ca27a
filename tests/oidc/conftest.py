"""A real OpenID provider (oidc-provider, configured as Pro Santé Connect) and a gateway
that signs in with it: `psc` (Pro Santé Connect) and `idp` (the establishment's IdP)."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from devtools.oidc_provider import OidcProvider
from tests.oidc.support import (
    APP_REDIRECT,
    IDP_CLIENT,
    PSC_CLIENT,
    WEB_REDIRECT,
    MobileApp,
)
from tests.support import free_port

CALLBACK = "http://localhost/api/v1/auth/oidc/{name}/callback"


@pytest.fixture(scope="session")
def backchannel_port() -> int:
    """Where this worker's live gateway listens when a test needs the provider to call it."""
    return free_port()


@pytest.fixture(scope="session")
def client_secrets() -> dict[str, str]:
    return {PSC_CLIENT: secrets.token_urlsafe(32), IDP_CLIENT: secrets.token_urlsafe(32)}


@pytest.fixture(scope="session")
def oidc_provider(
    tmp_path_factory: pytest.TempPathFactory, backchannel_port: int, client_secrets: dict
) -> Iterator[OidcProvider]:
    def client(client_id: str, name: str) -> dict[str, Any]:
        return {
            "client_id": client_id,
            "client_secret": client_secrets[client_id],
            "redirect_uris": [CALLBACK.format(name=name)],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "backchannel_logout_uri": f"http://127.0.0.1:{backchannel_port}"
            f"/api/v1/auth/oidc/{name}/backchannel-logout",
            "backchannel_logout_session_required": True,
        }

    provider = OidcProvider(
        tmp_path_factory.mktemp("oidc-provider"),
        clients=[client(PSC_CLIENT, "psc"), client(IDP_CLIENT, "idp")],
        accounts={},
    )
    with provider:
        yield provider


@pytest.fixture
def oidc_settings(tmp_path: Path, oidc_provider: OidcProvider, client_secrets: dict):
    """Write the gateway's provider file; `jit` turns on just-in-time provisioning."""

    def write(*, jit: bool = False, idp: dict | None = None) -> dict[str, str]:
        files = {}
        for client_id, secret in client_secrets.items():
            files[client_id] = tmp_path / f"{client_id}.secret"
            files[client_id].write_text(secret)
        described = {
            "psc": {
                "kind": "psc",
                "issuer": oidc_provider.issuer,
                "client_id": PSC_CLIENT,
                "client_secret_file": str(files[PSC_CLIENT]),
                "jit_provisioning": jit,
            },
            "idp": {
                "kind": "idp",
                "issuer": oidc_provider.issuer,
                "client_id": IDP_CLIENT,
                "client_secret_file": str(files[IDP_CLIENT]),
                "scopes": ["openid", "profile", "groups"],
                "user_claim": "preferred_username",
                "admin_claim": "groups",
                "admin_value": "estafette-admins",
                "jit_provisioning": jit,
                **(idp or {}),
            },
        }
        path = tmp_path / "oidc-providers.json"
        path.write_text(json.dumps(described))
        return {
            "ESTAFETTE_OIDC_PROVIDERS": str(path),
            "ESTAFETTE_OIDC_REDIRECT_URIS": f"{APP_REDIRECT},{WEB_REDIRECT}",
        }

    return write


@pytest.fixture
def app(make_app: Callable[..., Flask], oidc_settings) -> Flask:
    """The gateway, signing in with the provider (`client` and `services` use it)."""
    return make_app(**oidc_settings())


@pytest.fixture
def phone(app: Flask, oidc_provider: OidcProvider) -> MobileApp:
    return MobileApp(app.test_client(), oidc_provider)


@pytest.fixture
def live_gateway(app: Flask, backchannel_port: int) -> Iterator[str]:
    """The same gateway served over HTTP, for the provider's back-channel calls."""
    server = make_server("127.0.0.1", backchannel_port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{backchannel_port}"
    server.shutdown()
    thread.join(10)
