"""The one IMAP connection factory: TLS or STARTTLS, then the mailbox's MSSanté auth mode.

Auth modes (DESIGN.md): `password` (LOGIN), `master` (SASL PLAIN with an authorization
identity, RFC 4616), `certificate` (TLS client certificate + SASL EXTERNAL, RFC 4422
appendix A), `xoauth2` (a bearer token, as Pro Santé Connect issues).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

DEFAULT_TIMEOUT = 30.0


class ImapUnavailable(Exception):
    """The server could not be reached or the session broke: retry with backoff."""


class ImapRefused(Exception):
    """The server refused us (bad credentials, bad certificate): needs an operator."""


@dataclass(frozen=True)
class ImapEndpoint:
    """Everything needed to open one mailbox; secrets stay in memory only."""

    address: str
    host: str
    port: int
    security: str
    auth: str
    username: str
    secret: str | None = None
    certificate: bytes | None = None
    token_provider: Callable[[], str] | None = None


def _enable_keepalive(sock: socket.socket) -> None:
    """Half-open connections (a NAT that forgot us) are found by TCP keepalive."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def connect(
    endpoint: ImapEndpoint, *, ca_bundle: Path | None, timeout: float = DEFAULT_TIMEOUT
) -> IMAPClient:
    """Open, secure and authenticate an IMAP session, or raise ImapUnavailable/ImapRefused."""
    from backend.mail.tls import client_context

    try:
        context = client_context(
            ca_bundle,
            endpoint.certificate if endpoint.auth == "certificate" else None,
            endpoint.secret if endpoint.auth == "certificate" else None,
        )
    except (ValueError, ssl.SSLError) as exc:
        raise ImapRefused(f"client certificate unusable: {type(exc).__name__}") from exc
    try:
        client = IMAPClient(
            endpoint.host,
            port=endpoint.port,
            ssl=endpoint.security == "tls",
            ssl_context=context,
            timeout=timeout,
        )
        if endpoint.security == "starttls":
            client.starttls(context)
    except ssl.SSLCertVerificationError as exc:
        raise ImapRefused(f"server certificate rejected: {exc.verify_message}") from exc
    except ssl.SSLError as exc:
        raise ImapRefused(f"TLS handshake failed: {exc.reason}") from exc
    except (OSError, IMAPClientError) as exc:
        raise ImapUnavailable(f"cannot reach {endpoint.host}:{endpoint.port}: {exc}") from exc
    _enable_keepalive(client.socket())
    try:
        _authenticate(client, endpoint)
    except LoginError as exc:
        _close_quietly(client)
        raise ImapRefused(f"authentication refused ({endpoint.auth})") from exc
    except (OSError, IMAPClientError) as exc:
        _close_quietly(client)
        raise ImapUnavailable(f"session broke during authentication: {exc}") from exc
    return client


def _authenticate(client: IMAPClient, endpoint: ImapEndpoint) -> None:
    if endpoint.auth == "password":
        client.login(endpoint.username, endpoint.secret or "")
    elif endpoint.auth == "master":
        # username/secret are the master user's; the mailbox is the authorization identity.
        client.plain_login(
            endpoint.username, endpoint.secret or "", authorization_identity=endpoint.address
        )
    elif endpoint.auth == "certificate":
        client.sasl_login("EXTERNAL", lambda _challenge: b"")
    elif endpoint.auth == "xoauth2":
        if endpoint.token_provider is None:
            raise ImapRefused("no token provider configured for XOAUTH2")
        client.oauth2_login(endpoint.username, endpoint.token_provider())
    else:
        raise ImapRefused(f"unknown auth mode {endpoint.auth!r}")


def _close_quietly(client: IMAPClient) -> None:
    with contextlib.suppress(OSError, IMAPClientError):
        client.shutdown()
