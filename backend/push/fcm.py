"""Senders: FCM HTTP v1 through firebase-admin, and a content-free log for development.

Both turn a list of `messaging.Message` (built by `backend.push.payloads`) into one
`Outcome` per message, in order. The dispatcher owns the retry policy; a sender makes
exactly one attempt per message.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import secrets
import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import firebase_admin
import google.auth.credentials
import google.auth.exceptions
import google.auth.transport.requests
import httpx
import pyreqwest.exceptions
import uvloop
from firebase_admin import credentials, exceptions, messaging
from firebase_admin._http_client import HttpxAsyncClient
from pyreqwest.client import ClientBuilder

from backend.metrics import PUSH_SEND_LATENCY as SEND_LATENCY
from backend.push.outcomes import Outcome, OutcomeKind

log = logging.getLogger("estafette.push")

MAX_BATCH = 500  # firebase-admin's limit for one send_each_async call
DEFAULT_TIMEOUT = 10.0  # seconds per HTTP request; firebase-admin's default is 120
# Requests on the wire at once: over HTTP/2 (Google), streams of one connection.
DEFAULT_MAX_IN_FLIGHT = 100
CONNECT_TIMEOUT = 5.0  # seconds

_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
_TRANSIENT = (
    exceptions.ResourceExhaustedError,  # includes messaging.QuotaExceededError (429)
    exceptions.UnavailableError,  # 503, and connection refused
    exceptions.InternalError,  # 500
    exceptions.DeadlineExceededError,  # timeouts
)
_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
_TOKEN_REFRESH = "TOKEN_REFRESH_FAILED"  # noqa: S105 - our code: no FCM answer, the OAuth2 refresh failed


class Sender(Protocol):
    """What the dispatcher needs from a push provider."""

    def send(self, messages: list[messaging.Message]) -> list[Outcome]: ...

    def submit(self, messages: list[messaging.Message]) -> Future[list[Outcome]]: ...

    def close(self) -> None: ...


class FcmSender:
    """Sends through firebase-admin's async HTTP v1 client, on an event loop it owns.

    The loop and its thread live as long as the sender, so HTTP connections (and the
    OAuth2 access token) are reused from one batch to the next.
    """

    def __init__(
        self,
        credentials_path: str | Path,
        endpoint: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        # A named app of our own: several senders (tests, benchmarks) never share state.
        self._app = firebase_admin.initialize_app(
            credentials.Certificate(str(credentials_path)),
            name=f"estafette-push-{secrets.token_hex(6)}",
        )
        self._client = _configure_messaging_service(self._app, endpoint, timeout, max_in_flight)
        # uvloop: measured 10-13% more pushes a second than asyncio's own loop.
        self._loop = uvloop.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fcm-sender", daemon=True
        )
        self._thread.start()
        self._closed = False

    def send(self, messages: list[messaging.Message]) -> list[Outcome]:
        """Send each message once; the outcomes are in the order of `messages`."""
        return self.submit(messages).result()

    def submit(self, messages: list[messaging.Message]) -> Future[list[Outcome]]:
        """Start sending, and return at once: the caller does other work meanwhile."""
        if self._closed:
            raise RuntimeError("FcmSender is closed")
        return asyncio.run_coroutine_threadsafe(self._send_all(messages), self._loop)

    def close(self) -> None:
        """Close the HTTP connections, delete the firebase app and stop the loop."""
        if self._closed:
            return
        self._closed = True
        # The connections belong to our loop: close them there. firebase-admin's own
        # close (run by delete_app) then finds the client already closed.
        asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result(timeout=10)
        firebase_admin.delete_app(self._app)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> FcmSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _send_all(self, messages: list[messaging.Message]) -> list[Outcome]:
        started = time.monotonic()
        outcomes: list[Outcome] = []
        for start in range(0, len(messages), MAX_BATCH):
            outcomes.extend(await self._send_batch(messages[start : start + MAX_BATCH]))
        SEND_LATENCY.observe(time.monotonic() - started)
        _log_summary(outcomes)
        return outcomes

    async def _send_batch(self, batch: list[messaging.Message]) -> list[Outcome]:
        try:
            response = await messaging.send_each_async(batch, app=self._app)
        except ValueError:
            # One message firebase-admin refuses to encode rejects the whole batch:
            # send the others one by one so only the bad one fails.
            if len(batch) == 1:
                return [Outcome.failed("INVALID_MESSAGE")]
            parts = await asyncio.gather(*(self._send_batch([m]) for m in batch))
            return [outcome for part in parts for outcome in part]
        except exceptions.FirebaseError as exc:
            return [outcome_for_error(exc)] * len(batch)
        return [
            Outcome.ok(r.message_id) if r.success else outcome_for_error(r.exception)
            for r in response.responses
        ]


class LogSender:
    """The sender when no FCM credentials are configured: one content-free log line a push."""

    def send(self, messages: list[messaging.Message]) -> list[Outcome]:
        """Log type, opaque mailbox id and count (never the token), and report success."""
        return self.submit(messages).result()

    def submit(self, messages: list[messaging.Message]) -> Future[list[Outcome]]:
        """Logs at once: the future is already done."""
        future: Future[list[Outcome]] = Future()
        for message in messages:
            data = message.data or {}
            log.info(
                "push (log only) type=%s mailbox=%s unread=%s",
                data.get("type"),
                data.get("mailbox"),
                data.get("unread"),
            )
        future.set_result([Outcome.ok() for _ in messages])
        return future

    def close(self) -> None:
        """Nothing to release."""


def create_sender(credentials_path: str | Path | None, endpoint: str | None = None) -> Sender:
    """`ESTAFETTE_FCM_CREDENTIALS` unset means pushes go to the log (API.md, Configuration)."""
    if not credentials_path:
        log.warning("ESTAFETTE_FCM_CREDENTIALS is not set: pushes are only logged")
        return LogSender()
    return FcmSender(credentials_path, endpoint)


def _configure_messaging_service(
    app: firebase_admin.App, endpoint: str | None, timeout: float, max_in_flight: int
) -> HttpxAsyncClient:
    """The one place we reach into firebase-admin, for what it has no option for.

    Changes only this app's messaging service: nothing global is patched.
    """
    service = messaging._get_messaging_service(app)
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
    were three quarters of the dispatcher's CPU; reqwest does the same work off the GIL.
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
    body (the message's name), and an httpx.Response, built for that alone, cost a tenth
    of the dispatcher's time. Failures still come back as httpx responses, whole."""

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
    and the generator's machinery was a twentieth of the dispatcher's time.
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
      `requests.Session`) per request, only in case the token needs a refresh: a fifth
      of the sender's CPU at a thousand pushes a second.
    - No refresh on a 401 that carries an FcmError (THIRD_PARTY_AUTH_ERROR: APNs or Web
      Push refused the project's key). The stock flow refreshes the access token and
      resends twice, each refresh a blocking call on the loop, for an answer a new Google
      token cannot change. A plain 401 (our token refused) still refreshes.
    """

    MAX_REFRESHES = 2  # as firebase-admin
    # google-auth renews a token 3 min 45 s before it expires (REFRESH_THRESHOLD), so
    # headers it has just let through stay good for this long without asking it again:
    # its check cost 13 us a push, as much as encoding the body.
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
        if response.status_code != 401 or _fcm_error_code(_error_body(response)):
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


def outcome_for_error(exc: BaseException | None) -> Outcome:
    """Map firebase-admin's exception for one message to what the dispatcher should do."""
    if not isinstance(exc, exceptions.FirebaseError):
        return Outcome.failed("UNKNOWN")
    if isinstance(exc.cause, google.auth.exceptions.GoogleAuthError):
        # No access token: the token endpoint is unreachable, or refused our key.
        transient = exc.cause.retryable or isinstance(
            exc.cause, google.auth.exceptions.TransportError
        )
        return Outcome.retry(_TOKEN_REFRESH) if transient else Outcome.failed(_TOKEN_REFRESH)
    error = _error_body(exc.http_response)
    fcm_code = _fcm_error_code(error)
    code = fcm_code or error.get("status") or exc.code
    if isinstance(exc, messaging.UnregisteredError):
        return Outcome.prune(code)
    if isinstance(exc, exceptions.InvalidArgumentError) and _blames_token(fcm_code, error):
        return Outcome.prune(code)
    if _is_transient(exc):
        return Outcome.retry(code, _retry_after(exc.http_response))
    return Outcome.failed(code)


def _error_body(response: httpx.Response | Any) -> dict[str, Any]:
    """The google.rpc.Status `error` object of an FCM answer, or {}."""
    if response is None:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _fcm_error_code(error: dict[str, Any]) -> str | None:
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("@type") == _FCM_ERROR_TYPE:
            return detail.get("errorCode")
    return None


def _blames_token(fcm_code: str | None, error: dict[str, Any]) -> bool:
    """True when an INVALID_ARGUMENT is about the registration token, not the message.

    FCM answers a malformed token with an FcmError detail, sometimes with a BadRequest
    violation on `message.token`. A bad message carries a BadRequest detail only, or
    (recipient not set) an FcmError plus a violation on another field.
    """
    if fcm_code != "INVALID_ARGUMENT":
        return False
    fields = [
        violation.get("field")
        for detail in error.get("details") or []
        if isinstance(detail, dict) and detail.get("@type") == _BAD_REQUEST_TYPE
        for violation in detail.get("fieldViolations") or []
        if isinstance(violation, dict)
    ]
    return all(field == "message.token" for field in fields)


def _is_transient(exc: exceptions.FirebaseError) -> bool:
    if isinstance(exc, _TRANSIENT):
        return True
    response = exc.http_response
    if response is not None:
        return response.status_code in _TRANSIENT_STATUS
    # No answer at all (connection dropped mid-request): worth another try.
    return isinstance(exc.cause, httpx.TransportError)


def _retry_after(response: httpx.Response | None) -> float | None:
    """Seconds from a Retry-After header, delay-seconds or HTTP-date (RFC 9110 §10.2.3)."""
    if response is None:
        return None
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _log_summary(outcomes: list[Outcome]) -> None:
    """One content-free line per batch: counts by outcome and FCM code, never a token."""
    problems = Counter((o.kind.value, o.code) for o in outcomes if o.kind is not OutcomeKind.OK)
    if problems:
        detail = " ".join(f"{kind}:{code}={n}" for (kind, code), n in sorted(problems.items()))
        log.warning("fcm sent %d, not delivered: %s", len(outcomes), detail)
    else:
        log.debug("fcm sent %d, all accepted", len(outcomes))
