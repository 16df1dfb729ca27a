"""FCM's transport under firebase-admin: the one module that touches its private names.

firebase-admin has no option for what the dispatcher needs, so this module reaches into
it, at four points, each named here and checked by
tests/push/test_firebase_admin_contract.py against the pin in requirements.txt
(firebase_admin==7.7.0), so that an upgrade that moves one fails there, by name:

1. `firebase_admin._http_client.HttpxAsyncClient`, subclassed (`_FcmHttpClient`): the stock
   client's HttpxRetryTransport retries 500 and 503 four times inside the batch, with its
   own backoff, ignoring Retry-After; the whole batch waits and the dispatcher never
   learns. Ours makes one attempt per message and sends it with reqwest (off the GIL).
2. `messaging._get_messaging_service(app)`: the app's `_MessagingService`, the only way to
   reach the next two.
3. `_MessagingService._fcm_url`: FCM's URL is hard-coded; the local FCM of the tests, the
   benches and an operator's proxy need another (`ESTAFETTE_FCM_ENDPOINT`).
4. `_MessagingService._async_client`: send_each_async's only way out, replaced by ours.

And three contracts firebase-admin never wrote down, which the same test exercises:
- an accepted message's answer is read only through `.json()` (`_Accepted`, cheaper than
  an httpx.Response);
- transport failures must be httpx exceptions, which firebase-admin maps to
  FirebaseError (`_as_httpx_error`): timeouts to DeadlineExceededError, refused
  connections to UnavailableError;
- the Authorization header as its GoogleAuthCredentialFlow sets it (`_Authorizer`).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import firebase_admin
import google.auth.credentials
import google.auth.transport.requests
import httpx
import pyreqwest.exceptions
from firebase_admin import messaging

# Private (1): see the module docstring. Subclassed, so that each message is tried once.
from firebase_admin._http_client import HttpxAsyncClient
from pyreqwest.client import ClientBuilder

CONNECT_TIMEOUT = 5.0  # seconds
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


def install_transport(
    app: firebase_admin.App, endpoint: str | None, timeout: float, max_in_flight: int
) -> HttpxAsyncClient:
    """Give this app's messaging service our endpoint and our HTTP client; returns the
    client. Changes only this app's service: nothing global is patched."""
    service = messaging._get_messaging_service(app)  # private: see the module docstring
    if endpoint:
        # FCM's URL is hard-coded (_MessagingService.FCM_URL); `_fcm_url` is this
        # service's copy, used by send, send_each and send_each_async. The OAuth2 token
        # refresh already goes to the service account's `token_uri`.
        service._fcm_url = f"{endpoint.rstrip('/')}/v1/projects/{app.project_id}/messages:send"
    client = _FcmHttpClient(
        max_in_flight, credential=app.credential.get_credential(), timeout=timeout
    )
    service._async_client = client  # send_each_async's only way out
    return client


class _FcmHttpClient(HttpxAsyncClient):
    """firebase-admin's async HTTP client, made to attempt each message exactly once, cheaply.

    send_each_async hands every message to `request`, which sends it with reqwest (Rust's
    hyper, through pyreqwest): HTTP/2 negotiated by ALPN, as Google offers it, HTTP/1.1
    otherwise. httpx and httpcore are pure Python, and at a thousand pushes a second they
    were most of the dispatcher's CPU; reqwest does the same work off the GIL.
    Answers come back as httpx responses and transport errors as httpx's exceptions, so
    firebase-admin maps them to FirebaseError exactly as with its own client.
    - No retries. firebase-admin's HttpxRetryTransport retries 500 and 503 four times
      with backoff inside the batch, ignoring Retry-After: the whole batch waits, and the
      dispatcher never learns. The dispatcher owns retries (Retry-After, the device's
      `retrying` state).
    - At most `max_in_flight` requests on the wire: send_each_async starts a whole batch
      at once. On a cold client the first one goes alone (`_Gate`).
    - OAuth2: see `_Authorizer`.
    """

    def __init__(self, max_in_flight: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # base URL, timeout and headers, as firebase-admin sets them
        self._reqwest = (
            ClientBuilder()
            .http2(True)
            .timeout(timedelta(seconds=self.timeout))
            .connect_timeout(timedelta(seconds=min(self.timeout, CONNECT_TIMEOUT)))
            .tcp_keepalive(timedelta(seconds=60))
            .user_agent("estafette")
            .build()
        )
        self._gate = _Gate(max_in_flight)
        self._authorizer = _Authorizer(kwargs["credential"])

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """firebase-admin's request: one attempt, plus token refreshes when ours is refused."""
        method, url = method.upper(), self.base_url + url  # firebase-admin says 'post'
        headers = {**self._headers, **(kwargs.get("headers") or {})}  # metrics headers
        body = b""
        if "json" in kwargs:
            headers["Content-Type"] = "application/json"
            body = json.dumps(kwargs["json"], separators=(",", ":")).encode()
        async with self._gate:
            for refreshes in range(_Authorizer.MAX_REFRESHES + 1):
                self._authorizer.authorize(method, url, headers)
                response = await self._exchange(method, url, headers, body)
                if not self._authorizer.refreshed_after(response, refreshes):
                    break
        if isinstance(response, _Accepted):
            return response  # type: ignore[return-value]  # see _Accepted
        response.request = httpx.Request(method, url)  # what its HTTPStatusError names
        return response.raise_for_status()

    async def _exchange(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> httpx.Response | _Accepted:
        try:
            request = self._reqwest.request(method, url).headers(headers).body_bytes(body)
            answer = await request.build().send()
            content = bytes(await answer.bytes())
        except pyreqwest.exceptions.PyreqwestError as exc:
            raise _as_httpx_error(exc, httpx.Request(method, url)) from exc
        if 200 <= answer.status < 300:
            return _Accepted(answer.status, content)
        return httpx.Response(answer.status, headers=list(answer.headers.items()), content=content)

    async def aclose(self) -> None:
        await super().aclose()
        await self._reqwest.close()


@dataclass(frozen=True, slots=True)
class _Accepted:
    """FCM's answer to a message it took. firebase-admin reads nothing of it but its JSON
    body (the message's name), and an httpx.Response, built for that alone, was a large
    share of the dispatcher's time (bench/push_throughput.py). Failures still come back as
    httpx responses, whole."""

    status_code: int
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class _Gate:
    """Who goes on the wire: at most `limit` requests at once, and one alone while the
    client is cold.

    reqwest learns that a connection speaks HTTP/2 only when its TLS handshake ends (ALPN),
    so a batch sent on a cold client opens one connection per request in flight: a
    hundred handshakes with Google where one will do. The first request opens the
    connection, alone; the others then share it. A client idle for `COLD_AFTER` may have
    lost it (idle timeouts, GOAWAY) and warms up again. A failed first request releases
    the others too: each must not wait out a timeout in turn.

    A class rather than a generator-based context manager: every push passes through it,
    and the generator's machinery showed in the dispatcher's profile.
    """

    COLD_AFTER = 60.0  # seconds; below reqwest's 90 s pool idle timeout

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._opening = asyncio.Lock()
        self._opener: asyncio.Task | None = None  # the request alone on the wire
        self._last_answer = -math.inf

    async def __aenter__(self) -> None:
        await self._slots.acquire()
        if not self._cold():
            return
        try:
            await self._opening.acquire()
        except BaseException:
            self._slots.release()
            raise
        if self._cold():
            self._opener = asyncio.current_task()
        else:
            self._opening.release()  # warmed up while we waited

    async def __aexit__(self, *_exc: object) -> None:
        self._last_answer = time.monotonic()
        if self._opener is not None and self._opener is asyncio.current_task():
            self._opener = None
            self._opening.release()
        self._slots.release()

    def _cold(self) -> bool:
        return time.monotonic() - self._last_answer > self.COLD_AFTER


class _Authorizer:
    """The Authorization header, as firebase-admin's GoogleAuthCredentialFlow sets it, minus
    two costs.

    - One google-auth transport for every request. The stock flow builds one (a new
      `requests.Session`) per request, only in case the token needs a refresh: a large
      share of the sender's CPU.
    - No refresh on a 401 that carries an FcmError (THIRD_PARTY_AUTH_ERROR: APNs or Web
      Push refused the project's key). The stock flow refreshes the access token and
      resends twice, each refresh a blocking call on the loop, for an answer a new Google
      token cannot change. A plain 401 (our token refused) still refreshes.
    """

    MAX_REFRESHES = 2  # as firebase-admin
    # google-auth renews a token 3 min 45 s before it expires (REFRESH_THRESHOLD), so
    # headers it has just let through stay good for this long without asking it again:
    # its check cost as much as encoding the body.
    RECHECK_SECONDS = 30.0

    def __init__(self, credential: google.auth.credentials.Credentials) -> None:
        self._credential = credential
        self._transport = google.auth.transport.requests.Request()
        self._granted: dict[str, str] = {}
        self._recheck_at = -math.inf

    def authorize(self, method: str, url: str, headers: dict[str, str]) -> None:
        """Set the bearer token, refreshing it first when missing or about to expire."""
        if time.monotonic() >= self._recheck_at:
            granted: dict[str, str] = {}
            self._credential.before_request(self._transport, method, url, granted)
            self._granted, self._recheck_at = granted, time.monotonic() + self.RECHECK_SECONDS
        headers.update(self._granted)

    def refreshed_after(self, response: httpx.Response | _Accepted, refreshes: int) -> bool:
        """Fetch a new token if `response` refused ours and refreshes remain; True if so,
        and the request should go again."""
        if response.status_code != 401 or fcm_error_code(error_body(response)):
            return False
        if refreshes >= self.MAX_REFRESHES:
            return False
        self._credential.refresh(self._transport)
        self._recheck_at = -math.inf
        return True


# pyreqwest's errors as the httpx errors firebase-admin knows: timeouts become
# DeadlineExceededError, refused connections UnavailableError (both retried), and any
# other transport failure an UnknownError that `_is_transient` also retries.
_HTTPX_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (pyreqwest.exceptions.ConnectTimeoutError, httpx.ConnectTimeout),
    (pyreqwest.exceptions.ReadTimeoutError, httpx.ReadTimeout),
    (pyreqwest.exceptions.WriteTimeoutError, httpx.WriteTimeout),
    (pyreqwest.exceptions.PoolTimeoutError, httpx.PoolTimeout),
    (pyreqwest.exceptions.RequestTimeoutError, httpx.TimeoutException),
    (pyreqwest.exceptions.ConnectError, httpx.ConnectError),
    (pyreqwest.exceptions.ReadError, httpx.ReadError),
    (pyreqwest.exceptions.WriteError, httpx.WriteError),
)


def _as_httpx_error(
    exc: pyreqwest.exceptions.PyreqwestError, request: httpx.Request
) -> httpx.TransportError:
    for theirs, ours in _HTTPX_ERRORS:
        if isinstance(exc, theirs):
            return ours(str(exc), request=request)
    return httpx.NetworkError(str(exc), request=request)


def error_body(response: httpx.Response | Any) -> dict[str, Any]:
    """The google.rpc.Status `error` object of an FCM answer, or {}."""
    if response is None:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def fcm_error_code(error: dict[str, Any]) -> str | None:
    """The FcmError `errorCode` of a google.rpc.Status `error` object, if any."""
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("@type") == FCM_ERROR_TYPE:
            return detail.get("errorCode")
    return None
