"""The one HTTP client the directory uses to reach the ANS: configured proxy and CA bundle.

`ESTAFETTE_OUTBOUND_PROXY` names the establishment's proxy (hospitals rarely let servers
out directly); `ESTAFETTE_DIRECTORY_CA_BUNDLE` the CAs the ANS servers are checked
against (service.annuaire.sante.fr presents an IGC Santé chain), the system store if unset.
TLS is always verified; environment proxies are ignored, so only the setting applies.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from backend.config import Settings

USER_AGENT = "Estafette (MSSante gateway) directory client"  # header values are ASCII


def tls_context(settings: Settings) -> ssl.SSLContext:
    if settings.directory_ca_bundle is not None:
        return ssl.create_default_context(cafile=str(settings.directory_ca_bundle))
    return ssl.create_default_context()


def outbound_client(settings: Settings, **kwargs: Any) -> httpx.Client:
    """An httpx client through the configured proxy, verifying TLS against the configured CAs."""
    headers = {"User-Agent": USER_AGENT, **kwargs.pop("headers", {})}
    return httpx.Client(
        proxy=settings.outbound_proxy,
        verify=tls_context(settings),
        trust_env=False,
        headers=headers,
        follow_redirects=True,
        **kwargs,
    )
