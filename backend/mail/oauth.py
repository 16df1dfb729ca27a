"""Bearer tokens for XOAUTH2 mailboxes: an OAuth2 client-credentials grant (RFC 6749 §4.4).

Pro Santé Connect issues the access tokens MSSanté operators accept for IMAP. The gateway is
a confidential client: it asks the mailbox's token endpoint for a token with its client id
and secret (HTTP Basic, RFC 6749 §2.3.1), caches it until shortly before it expires, and
hands it to `connect()` through `ImapEndpoint.token_provider`. Failures are not retried
here: the sync worker's jittered backoff already does that for the whole connection.
"""

from __future__ import annotations

import threading
import time

import httpx

from backend.mail.imap import ImapRefused, ImapUnavailable
from backend.metrics import TOKEN_REFRESH_FAILURES

# Renew this long before the announced expiry, so a token never dies mid-login.
EXPIRY_MARGIN_SECONDS = 30.0
DEFAULT_LIFETIME_SECONDS = 300.0
TIMEOUT_SECONDS = 10.0


class ClientCredentialsTokens:
    """A token provider: call it for a valid access token; `forget()` after a refusal."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
    ) -> None:
        self._token_url = token_url
        self._auth = httpx.BasicAuth(client_id, client_secret)
        self._scope = scope
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def __call__(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                self._token, lifetime = self._fetch()
                self._expires_at = time.monotonic() + max(0.0, lifetime - EXPIRY_MARGIN_SECONDS)
            return self._token

    def forget(self) -> None:
        """The server refused the token (revoked early?): fetch a fresh one next time."""
        with self._lock:
            self._token = None

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        try:
            response = httpx.post(
                self._token_url,
                data=form,
                auth=self._auth,
                headers={"Accept": "application/json"},
                timeout=TIMEOUT_SECONDS,
            )
        except httpx.HTTPError as exc:
            TOKEN_REFRESH_FAILURES.labels("unreachable").inc()
            raise ImapUnavailable(f"token endpoint unreachable: {type(exc).__name__}") from exc
        if response.status_code in (400, 401, 403):
            # RFC 6749 §5.2: invalid_client, unauthorized_client... an operator must act.
            error = _json(response).get("error", f"HTTP {response.status_code}")
            TOKEN_REFRESH_FAILURES.labels("refused").inc()
            raise ImapRefused(f"token endpoint refused the client ({error})")
        if response.status_code != 200:
            TOKEN_REFRESH_FAILURES.labels("unreachable").inc()
            raise ImapUnavailable(f"token endpoint answered HTTP {response.status_code}")
        body = _json(response)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            TOKEN_REFRESH_FAILURES.labels("invalid").inc()
            raise ImapUnavailable("token endpoint answered without an access_token")
        try:
            lifetime = float(body.get("expires_in", DEFAULT_LIFETIME_SECONDS))
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME_SECONDS
        return token, lifetime


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
