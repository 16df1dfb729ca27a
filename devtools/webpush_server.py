"""A local Web Push service (RFC 8030) that plays the browser too, for tests and the demo.

No internet here, so no Mozilla, Google or Apple push service: this one speaks their wire
format. `subscribe()` makes what a browser's `PushManager.subscribe()` gives a page (an
endpoint here, a P-256 key and an auth secret, the private half kept). A push is checked
as a push service checks it (a VAPID JWT, RFC 8292, signed by the key it names, for this
origin, not expired), then decrypted as the browser would (RFC 8291, `aes128gcm`), so a
test reads the very bytes a service worker would. It can fail like the real ones: 404 or
410 for a subscription gone, 429 or 5xx with Retry-After, or a slow answer.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

CLEAR_HEADERS = ("TTL", "Urgency", "Topic", "Content-Encoding")


def write_vapid_key(path: Path) -> Path:
    """A fresh VAPID key (P-256, PEM), as an operator makes one for ESTAFETTE_VAPID_PRIVATE_KEY."""
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return path


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """One subscription's private half: what only the browser holds."""

    id: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    endpoint: str

    def subscription(self) -> dict[str, Any]:
        point = self.private_key.public_key().public_bytes(
            Encoding.X962, PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": _b64url(point), "auth": _b64url(self.auth)},
        }


@dataclass
class Received:
    subscription_id: str
    payload: dict[str, Any]  # decrypted, as the service worker reads it
    headers: dict[str, str]  # TTL, Urgency, Topic, Content-Encoding: what travels in clear
    claims: dict[str, Any]  # the VAPID JWT's
    vapid_key: str  # the `k` it was signed with
    plaintext: str = ""  # the decrypted bytes as text: what a browser hands its service worker
    received_at: float = field(default_factory=time.time)


@dataclass
class _Failure:
    status: int
    retry_after: str | None
    delay: float


class WebPushService:
    def __init__(self) -> None:
        self._browsers: dict[str, Browser] = {}
        self._gone: set[str] = set()
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self.received: list[Received] = []
        self.refused: list[tuple[int, str]] = []  # (status, why) of pushes not accepted
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> WebPushService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebPushService:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def subscribe(self) -> Browser:
        """A new browser subscription, as `pushManager.subscribe()` would give it."""
        browser_id = secrets.token_urlsafe(12)
        browser = Browser(
            browser_id,
            ec.generate_private_key(ec.SECP256R1()),
            secrets.token_bytes(16),
            f"{self.origin}/push/{browser_id}",
        )
        with self._lock:
            self._browsers[browser_id] = browser
        return browser

    def unsubscribe(self, browser: Browser) -> None:
        """The user revoked the permission: the service answers 410 Gone from now on."""
        with self._lock:
            self._gone.add(browser.id)

    def fail_next(
        self, status: int, *, retry_after: str | None = None, count: int = 1, delay: float = 0.0
    ) -> None:
        with self._lock:
            self._failures += [_Failure(status, retry_after, delay)] * count

    def received_by(self, browser: Browser) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.subscription_id == browser.id]

    # -- the HTTP side --------------------------------------------------------------------

    def _accept(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str]]:
        browser_id = path.removeprefix("/push/")
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
            browser = self._browsers.get(browser_id)
            gone = browser_id in self._gone
        if failure is not None:
            time.sleep(failure.delay)
            extra = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            self.refused.append((failure.status, "injected"))
            return failure.status, extra
        if browser is None or gone:
            status = 410 if gone else 404
            self.refused.append((status, "no such subscription"))
            return status, {}
        try:
            claims, key = self._check_vapid(headers.get("Authorization", ""))
        except (ValueError, jwt.PyJWTError) as exc:
            self.refused.append((401, str(exc)))
            return 401, {}
        if headers.get("Content-Encoding") != "aes128gcm" or "TTL" not in headers:
            self.refused.append((400, "not aes128gcm, or no TTL"))
            return 400, {}
        plain = http_ece.decrypt(
            body, private_key=browser.private_key, auth_secret=browser.auth, version="aes128gcm"
        )
        received = Received(
            browser_id,
            json.loads(plain),
            {k: headers[k] for k in CLEAR_HEADERS if k in headers},
            claims,
            key,
            plain.decode(),
        )
        with self._lock:
            self.received.append(received)
        return 201, {"Location": f"{self.origin}/message/{secrets.token_urlsafe(8)}"}

    def _check_vapid(self, authorization: str) -> tuple[dict[str, Any], str]:
        """RFC 8292 §3: `vapid t=<JWT>, k=<key>`; the JWT signed (ES256) by that key, for
        this push service's origin, expiring within 24 hours, with a contact (`sub`)."""
        scheme, _, rest = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise ValueError("not a vapid Authorization")
        params = dict(part.strip().split("=", 1) for part in rest.split(","))
        point = _unb64url(params["k"])
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        claims = jwt.decode(params["t"], key=key, algorithms=["ES256"], audience=self.origin)
        if claims["exp"] > time.time() + 24 * 3600 or not claims.get("sub"):
            raise ValueError("exp beyond 24 h, or no sub")
        return claims, params["k"]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, headers = service._accept(self.path, self.headers, body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        return Handler
