"""Senders: FCM HTTP v1 through firebase-admin, and a content-free log for development.

Both turn a list of `messaging.Message` (built by `backend.push.payloads`) into one
`Outcome` per message, in order. The dispatcher owns the retry policy; a sender makes
exactly one attempt per message. This module uses firebase-admin's public API only;
every touch of its private names is in `backend.push.fcm_transport`.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import secrets
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

import firebase_admin
import google.auth.credentials
import google.auth.exceptions
import google.auth.transport.requests
import httpx
import uvloop
from firebase_admin import credentials, exceptions, messaging

from backend.metrics import PUSH_SEND_LATENCY as SEND_LATENCY
from backend.push.fcm_transport import error_body, fcm_error_code, install_transport
from backend.push.outcomes import Outcome, log_summary

log = logging.getLogger("estafette.push")

MAX_BATCH = 500  # firebase-admin's limit for one send_each_async call
DEFAULT_TIMEOUT = 10.0  # seconds per HTTP request; firebase-admin's default is 120
# Requests on the wire at once: over HTTP/2 (Google), streams of one connection.
DEFAULT_MAX_IN_FLIGHT = 100

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
        self._client = install_transport(self._app, endpoint, timeout, max_in_flight)
        # uvloop: faster than asyncio's own loop (bench/push_throughput.py).
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
        log_summary(log, "fcm", outcomes)
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
    error = error_body(exc.http_response)
    fcm_code = fcm_error_code(error)
    code = fcm_code or error.get("status") or exc.code
    if isinstance(exc, messaging.UnregisteredError):
        return Outcome.prune(code)
    if isinstance(exc, exceptions.InvalidArgumentError) and _blames_token(fcm_code, error):
        return Outcome.prune(code)
    if _is_transient(exc):
        return Outcome.retry(code, _retry_after(exc.http_response))
    return Outcome.failed(code)


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
    return None if response is None else retry_after_seconds(response.headers.get("Retry-After"))


def retry_after_seconds(header: str | None) -> float | None:
    """Seconds from a Retry-After header, delay-seconds or HTTP-date (RFC 9110 §10.2.3)."""
    value = (header or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
