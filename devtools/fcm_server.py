"""A local server that speaks the FCM HTTP v1 API and the OAuth2 token endpoint.

firebase-admin runs unmodified in tests and benchmarks; only the service account's
`token_uri` and the FCM endpoint point here (DESIGN.md, "The real components").
Error bodies reproduce FCM's google.rpc.Status answers, so firebase-admin maps them to
the same exception classes as in production.

It is built on asyncio protocols with a minimal HTTP/1.1 keep-alive parser, in its own
thread, because benchmarks push tens of thousands of messages through it. Given a TLS
context it also speaks HTTP/2 (the `h2` state machine) to clients that pick it by ALPN,
as Google's front ends do.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import secrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

FailureKind = Literal[
    "unregistered",
    "invalid_token",
    "invalid_payload",
    "quota",
    "unavailable",
    "internal",
    "sender_id_mismatch",
    "third_party_auth",
]

_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
_SEND_PREFIX = "/v1/projects/"
_SEND_SUFFIX = "/messages:send"
_MAX_HEAD = 64 * 1024

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _fcm_error(code: str) -> dict[str, str]:
    return {"@type": _FCM_ERROR, "errorCode": code}


def _status(http: int, status: str, message: str, details: list[dict[str, Any]]) -> dict:
    """A google.rpc.Status error body, as Google APIs answer."""
    error: dict[str, Any] = {"code": http, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


# Bodies as FCM sends them (firebase.google.com/docs/cloud-messaging/error-codes).
_FAILURES: dict[str, tuple[int, dict]] = {
    "unregistered": (
        404,
        _status(404, "NOT_FOUND", "Requested entity was not found.", [_fcm_error("UNREGISTERED")]),
    ),
    "invalid_token": (
        400,
        _status(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            [_fcm_error("INVALID_ARGUMENT")],
        ),
    ),
    # A malformed message: BadRequest only, no FcmError. The token is not at fault.
    "invalid_payload": (
        400,
        _status(
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'message.data[0].value' (TYPE_STRING), 12",
            [
                {
                    "@type": _BAD_REQUEST,
                    "fieldViolations": [
                        {
                            "field": "message.data[0].value",
                            "description": "Invalid value at 'message.data[0].value' "
                            "(TYPE_STRING), 12",
                        }
                    ],
                }
            ],
        ),
    ),
    "quota": (
        429,
        _status(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute'.",
            [
                _fcm_error("QUOTA_EXCEEDED"),
                {
                    "@type": _QUOTA_FAILURE,
                    "violations": [{"subject": "device", "description": "Device message rate"}],
                },
            ],
        ),
    ),
    "unavailable": (
        503,
        _status(
            503, "UNAVAILABLE", "The service is currently unavailable.", [_fcm_error("UNAVAILABLE")]
        ),
    ),
    "internal": (
        500,
        _status(500, "INTERNAL", "Internal error encountered.", [_fcm_error("INTERNAL")]),
    ),
    "sender_id_mismatch": (
        403,
        _status(403, "PERMISSION_DENIED", "SenderId mismatch", [_fcm_error("SENDER_ID_MISMATCH")]),
    ),
    "third_party_auth": (
        401,
        _status(
            401,
            "UNAUTHENTICATED",
            "Auth error from APNS or Web Push Service",
            [_fcm_error("THIRD_PARTY_AUTH_ERROR")],
        ),
    ),
}

_BAD_CREDENTIALS = _status(
    401,
    "UNAUTHENTICATED",
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential.",
    [],
)
_NO_RECIPIENT = _status(
    400,
    "INVALID_ARGUMENT",
    "Recipient of the message is not set.",
    [
        {
            "@type": _BAD_REQUEST,
            "fieldViolations": [
                {"field": "message", "description": "Recipient of the message is not set."}
            ],
        },
        _fcm_error("INVALID_ARGUMENT"),
    ],
)
_NOT_JSON = _status(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", [])
_NOT_FOUND = _status(404, "NOT_FOUND", "Not found.", [])


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One `messages:send` request as the server saw it, and the status it answered."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any  # the parsed JSON body, None if it was not JSON
    received_at: float  # time.time()
    status: int
    http_version: str = "1.1"  # "2" over HTTP/2

    @property
    def message(self) -> dict[str, Any]:
        return self.body.get("message", {}) if isinstance(self.body, dict) else {}

    @property
    def token(self) -> str | None:
        """The device the message was addressed to: a registration token or an FID."""
        return self.message.get("token") or self.message.get("fid")

    @property
    def data(self) -> dict[str, str]:
        return self.message.get("data", {})


@dataclass(slots=True)
class _Failure:
    kind: str
    remaining: int | None
    retry_after: float | None


class FakeFcm:
    """FCM HTTP v1 `messages:send` and an OAuth2 token endpoint on 127.0.0.1.

    Use as a context manager, or call `start()` and `stop()`.
    """

    def __init__(
        self, *, token_ttl: int = 3600, latency: float = 0.0, tls: ssl.SSLContext | None = None
    ) -> None:
        """`latency` delays every answer by that many seconds, to stand in for the real
        round trip to Google (loopback answers in well under a millisecond). With `tls`,
        the server is https and offers HTTP/2 and HTTP/1.1 by ALPN."""
        self._token_ttl = token_ttl
        self.latency = latency
        self._tls = tls
        if tls is not None:
            tls.set_alpn_protocols(["h2", "http/1.1"])
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: list[RecordedRequest] = []
        self._failures: dict[str, _Failure] = {}
        self._outage: _Failure | None = None
        self._issued: set[str] = set()
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._token_requests = 0
        self._connections = 0
        self._predicate_waiters = 0
        self._count_targets: list[int] = []
        self._ids = itertools.count(1)
        self._tag = secrets.token_hex(8)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._transports: set[asyncio.Transport] = set()
        self._port = 0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeFcm:
        """Start listening on a free port, in a background thread."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(
                        lambda: _HttpConnection(self), "127.0.0.1", 0, backlog=1024, ssl=self._tls
                    )
                )
                self._port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-fcm", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close every connection and stop the server thread."""
        if self._thread is None or self._loop is None:
            return
        loop = self._loop

        def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for transport in list(self._transports):
                transport.close()
            loop.call_later(0.05, loop.stop)  # let close() callbacks run first

        loop.call_soon_threadsafe(shutdown)
        self._thread.join(timeout=10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> FakeFcm:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The FCM endpoint to give the sender (`ESTAFETTE_FCM_ENDPOINT`)."""
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self._port}"

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    # -- test controls -----------------------------------------------------------------

    def write_service_account(self, path: Path, project_id: str = "estafette-test") -> Path:
        """Write a service-account JSON whose `token_uri` is this server.

        The RSA key is fresh; the server keeps its public half and checks the signature
        of the JWT assertion google-auth sends to `/token`.
        """
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        email = f"firebase-adminsdk@{project_id}.iam.gserviceaccount.com"
        info = {
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": key_id,
            "private_key": pem,
            "client_email": email,
            "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email}",
            "universe_domain": "googleapis.com",
        }
        with self._lock:
            self._keys[key_id] = key.public_key()
        path = Path(path)
        path.write_text(json.dumps(info, indent=2))
        return path

    def fail(
        self,
        token: str,
        kind: FailureKind,
        times: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer sends to `token` with FCM's `kind` error; `times=N` fails N times then heals."""
        if kind not in _FAILURES:
            raise ValueError(f"unknown failure kind {kind!r}; one of {sorted(_FAILURES)}")
        with self._lock:
            self._failures[token] = _Failure(kind, times, retry_after)

    def fail_all(self, kind: FailureKind | None, retry_after: float | None = None) -> None:
        """An incident: every send answers FCM's `kind` error until `fail_all(None)`.

        Failures set for one token with `fail` still win over it."""
        if kind is not None and kind not in _FAILURES:
            raise ValueError(f"unknown failure kind {kind!r}; one of {sorted(_FAILURES)}")
        with self._lock:
            self._outage = None if kind is None else _Failure(kind, None, retry_after)

    def revoke_access_tokens(self) -> None:
        """Forget every access token issued, as if Google had revoked them (next send: 401)."""
        with self._lock:
            self._issued.clear()

    def reset(self) -> None:
        """Forget recorded requests, failures and counters. Issued tokens stay valid."""
        with self._lock:
            self._requests.clear()
            self._failures.clear()
            self._outage = None
            self._token_requests = 0
            self._connections = 0

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every `messages:send` request so far, failed ones included, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def token_requests(self) -> int:
        """How many access tokens `/token` has handed out."""
        with self._lock:
            return self._token_requests

    @property
    def connections(self) -> int:
        """How many TCP connections clients opened (to check that they are reused)."""
        with self._lock:
            return self._connections

    def wait_for(
        self, predicate: Callable[[list[RecordedRequest]], bool], timeout: float
    ) -> list[RecordedRequest]:
        """Block until `predicate(requests)` holds; AssertionError with what was seen if not."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._predicate_waiters += 1
            try:
                while not predicate(self._requests):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise AssertionError(self._describe_timeout(timeout))
                    self._changed.wait(remaining)
                return list(self._requests)
            finally:
                self._predicate_waiters -= 1

    def wait_for_count(self, n: int, timeout: float) -> list[RecordedRequest]:
        """Block until at least `n` `messages:send` requests were received."""
        deadline = time.monotonic() + timeout
        with self._changed:
            # Wake this waiter once, when the n-th request lands, not on every request.
            self._count_targets.append(n)
            try:
                while len(self._requests) < n:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise AssertionError(
                            f"expected {n} requests: " + self._describe_timeout(timeout)
                        )
                    self._changed.wait(remaining)
                return list(self._requests)
            finally:
                self._count_targets.remove(n)

    def _describe_timeout(self, timeout: float) -> str:
        seen = self._requests
        last = [f"{r.status} {r.message.get('data')} token={str(r.token)[:12]}" for r in seen[-5:]]
        return f"timed out after {timeout}s with {len(seen)} requests seen; last: {last}"

    # -- request handling (server thread) ----------------------------------------------

    def _handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, version: str
    ) -> tuple[int, bytes, dict[str, str]]:
        if target.startswith("http://"):  # absolute form: a client using us as its proxy
            target = urllib.parse.urlsplit(target).path
        path = target.split("?", 1)[0]
        if path == "/token":
            return self._handle_token(method, body)
        if path.startswith(_SEND_PREFIX) and path.endswith(_SEND_SUFFIX):
            project = path[len(_SEND_PREFIX) : -len(_SEND_SUFFIX)]
            if method != "POST":
                return 405, _json(_NOT_FOUND), {}
            return self._handle_send(method, path, project, headers, body, version)
        return 404, _json(_NOT_FOUND), {}

    def _handle_token(self, method: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        if method != "POST":
            return 405, _json({"error": "invalid_request"}), {}
        form = urllib.parse.parse_qs(body.decode())
        assertion = form.get("assertion", [""])[0]
        problem = self._check_assertion(form.get("grant_type", [""])[0], assertion)
        if problem:
            return 400, _json({"error": "invalid_grant", "error_description": problem}), {}
        access_token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self._issued.add(access_token)
            self._token_requests += 1
        answer = {
            "access_token": access_token,
            "expires_in": self._token_ttl,
            "token_type": "Bearer",
        }
        return 200, _json(answer), {}

    def _check_assertion(self, grant_type: str, assertion: str) -> str | None:
        """Check the RFC 7523 JWT bearer grant the way Google does: signed by a known key."""
        if grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return "unsupported grant_type"
        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            header = json.loads(_b64decode(header_b64))
            claims = json.loads(_b64decode(claims_b64))
            signature = _b64decode(signature_b64)
        except ValueError:
            return "malformed assertion"
        with self._lock:
            key = self._keys.get(header.get("kid", ""))
        if key is None or header.get("alg") != "RS256":
            return "Invalid JWT Signature."
        try:
            key.verify(
                signature,
                f"{header_b64}.{claims_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return "Invalid JWT Signature."
        # google-auth puts Google's token endpoint in `aud` whatever the token_uri.
        audiences = {self.token_uri, "https://oauth2.googleapis.com/token"}
        if claims.get("aud") not in audiences or claims.get("exp", 0) < time.time():
            return "Invalid JWT: audience or expiry"
        return None

    def _handle_send(
        self,
        method: str,
        path: str,
        project: str,
        headers: dict[str, str],
        raw: bytes,
        version: str,
    ) -> tuple[int, bytes, dict[str, str]]:
        received_at = time.time()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        extra: dict[str, str] = {}
        auth = headers.get("authorization", "")
        with self._lock:
            authorised = auth.startswith("Bearer ") and auth[7:] in self._issued
            message = body.get("message") if isinstance(body, dict) else None
            if not isinstance(message, dict):
                message = None
            token = (message.get("token") or message.get("fid")) if message else None
            failure = self._failures.get(token) if authorised and token is not None else None
            if failure is None and authorised:
                failure = self._outage
            if failure is not None and failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    del self._failures[token]
            if not authorised:
                status, answer = 401, _BAD_CREDENTIALS
            elif message is None:
                status, answer = 400, _NOT_JSON
            elif not (token or message.get("topic") or message.get("condition")):
                status, answer = 400, _NO_RECIPIENT
            elif failure is not None:
                status, answer = _FAILURES[failure.kind]
                if failure.retry_after is not None:
                    extra["Retry-After"] = _format_retry_after(failure.retry_after)
            else:
                status = 200
                answer = {"name": f"projects/{project}/messages/0:{next(self._ids)}%{self._tag}"}
            self._requests.append(
                RecordedRequest(method, path, headers, body, received_at, status, version)
            )
            if self._predicate_waiters or (
                self._count_targets and len(self._requests) >= min(self._count_targets)
            ):
                self._changed.notify_all()
        return status, _json(answer), extra

    def _connection_opened(self, transport: asyncio.Transport) -> None:
        self._transports.add(transport)
        with self._lock:
            self._connections += 1


class _HttpConnection(asyncio.Protocol):
    """A minimal HTTP/1.1 server connection: Content-Length bodies, keep-alive, pipelining."""

    __slots__ = ("_buffer", "_h2", "_server", "_transport")

    def __init__(self, server: FakeFcm) -> None:
        self._server = server
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._h2: _Http2Session | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server._connection_opened(transport)
        tls = transport.get_extra_info("ssl_object")
        if tls is not None and tls.selected_alpn_protocol() == "h2":
            self._h2 = _Http2Session(self._server, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._server._transports.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        if self._h2 is not None:
            self._h2.data_received(data)
            return
        self._buffer += data
        while self._transport is not None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_HEAD:
                    self._respond(400, _json(_NOT_JSON), {}, False)
                return
            lines = self._buffer[:end].decode("latin-1").split("\r\n")
            try:
                method, target, version = lines[0].split(" ", 2)
            except ValueError:
                self._respond(400, _json(_NOT_JSON), {}, False)
                return
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "transfer-encoding" in headers:
                self._respond(411, b"", {}, False)
                return
            length = int(headers.get("content-length", "0"))
            start = end + 4
            if len(self._buffer) < start + length:
                return
            body = bytes(self._buffer[start : start + length])
            del self._buffer[: start + length]
            status, payload, extra = self._server._handle(method, target, headers, body, "1.1")
            keep_alive = version == "HTTP/1.1" and headers.get("connection", "") != "close"
            if self._server.latency > 0:
                # Equal delays keep answers in request order on the connection.
                asyncio.get_running_loop().call_later(
                    self._server.latency, self._respond, status, payload, extra, keep_alive
                )
            else:
                self._respond(status, payload, extra, keep_alive)

    def _respond(self, status: int, body: bytes, extra: dict[str, str], keep_alive: bool) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        head = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            "Content-Type: application/json; charset=UTF-8",
            f"Content-Length: {len(body)}",
        ]
        head.extend(f"{name}: {value}" for name, value in extra.items())
        if not keep_alive:
            head.append("Connection: close")
        self._transport.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        if not keep_alive:
            self._transport.close()
            self._transport = None


class _Http2Session:
    """The server side of one HTTP/2 connection: requests are streams, answered in any order."""

    def __init__(self, server: FakeFcm, transport: asyncio.Transport) -> None:
        self._server = server
        self._transport = transport
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self._streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self._h2.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()
            self._transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self._streams[event.stream_id] = (dict(event.headers), bytearray())
            elif isinstance(event, h2.events.DataReceived):
                self._streams[event.stream_id][1].extend(event.data)
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self._answer(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self._streams.pop(event.stream_id, None)
        self._flush()

    def _answer(self, stream_id: int) -> None:
        headers, body = self._streams.pop(stream_id)
        method, target = headers.pop(":method"), headers.pop(":path")
        headers = {name: value for name, value in headers.items() if not name.startswith(":")}
        status, payload, extra = self._server._handle(method, target, headers, bytes(body), "2")
        if self._server.latency > 0:
            asyncio.get_running_loop().call_later(
                self._server.latency, self._respond, stream_id, status, payload, extra
            )
        else:
            self._respond(stream_id, status, payload, extra)

    def _respond(self, stream_id: int, status: int, body: bytes, extra: dict[str, str]) -> None:
        if self._transport.is_closing():
            return
        head = [
            (":status", str(status)),
            ("content-type", "application/json; charset=UTF-8"),
            ("content-length", str(len(body))),
            *((name.lower(), value) for name, value in extra.items()),
        ]
        try:
            self._h2.send_headers(stream_id, head)
            self._h2.send_data(stream_id, body, end_stream=True)  # FCM answers are small
        except h2.exceptions.StreamClosedError:
            return  # the client gave up on it
        self._flush()

    def _flush(self) -> None:
        if not self._transport.is_closing():
            self._transport.write(self._h2.data_to_send())


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _format_retry_after(seconds: float) -> str:
    # RFC 9110 delay-seconds is a whole number.
    return str(math.ceil(seconds))
