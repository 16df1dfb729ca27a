"""Web Push (RFC 8030) for the web client, beside FCM, behind the same `Sender` contract.

A browser subscription is an endpoint at its vendor's push service and two keys. The
payload is the very data block an FCM push carries (`backend.push.payloads`), encrypted
for the browser alone (RFC 8291, `aes128gcm`): the push service sees only ciphertext,
the `Urgency` and a `Topic` (RFC 8030 §5.3, §5.4), which is the opaque mailbox id and
replaces a push still waiting for an offline browser, as FCM's collapse key does. Each
request is signed with our VAPID key (RFC 8292), so the push service knows who sends.

What the push service answers maps to the dispatcher's outcomes: 201 ok; 404 and 410
(the subscription is gone) prune; 429 and 5xx (or no answer) retry after Retry-After;
anything else is a refusal. pywebpush encrypts, signs and posts; one attempt per message.

A subscription names the URL the dispatcher will POST to. Only the push services of
`ESTAFETTE_WEB_PUSH_ORIGINS` are accepted, at registration and again here: a user must
not be able to aim the gateway at the hospital's own network.
"""

from __future__ import annotations

import base64
import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from firebase_admin import messaging

from backend.push.fcm import retry_after_seconds
from backend.push.futures import gather, then
from backend.push.outcomes import Outcome, log_summary

log = logging.getLogger("estafette.push")

DEFAULT_TIMEOUT = 10.0
MAX_IN_FLIGHT = 16  # requests at once, one thread each (pywebpush is synchronous)
_GONE = frozenset({404, 410})
_TRANSIENT = frozenset({429, 500, 502, 503, 504})


def origin_allowed(endpoint: str, origins: tuple[str, ...]) -> bool:
    """Whether a subscription's endpoint is at one of the allowed push services.

    An origin may start with `*.` for a vendor's many hosts (`https://*.notify.windows.com`).
    """
    parts = urlsplit(endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return False
    if parts.username or parts.password:
        return False
    origin = f"{parts.scheme}://{parts.netloc}"
    return any(fnmatch(origin, allowed) for allowed in origins)


def public_key(private_key_path: Path) -> str:
    """The VAPID public key as the browser's `applicationServerKey` wants it: the
    uncompressed P-256 point, base64url without padding."""
    from py_vapid import Vapid  # here: every process builds the app, few send Web Push

    vapid = Vapid.from_file(private_key_file=str(private_key_path))
    point = vapid.public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(point).rstrip(b"=").decode()


class WebPushSender:
    """Posts encrypted, VAPID-signed pushes from a small thread pool."""

    def __init__(
        self,
        private_key_path: Path,
        subject: str,
        origins: tuple[str, ...],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_in_flight: int = MAX_IN_FLIGHT,
        ca_bundle: Path | None = None,
    ) -> None:
        # Imported here, not with the module: aiohttp comes with pywebpush (0.3 s at start).
        from py_vapid import Vapid
        from pywebpush import WebPushException, webpush

        self._webpush, self._refused = webpush, WebPushException
        self._vapid = Vapid.from_file(private_key_file=str(private_key_path))
        self._subject = subject
        self._origins = origins
        self._timeout = timeout
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="webpush")
        self._http = requests.Session()
        if ca_bundle is not None:
            self._http.verify = str(ca_bundle)

    def send(self, messages: list[messaging.Message]) -> list[Outcome]:
        return self.submit(messages).result()

    def submit(self, messages: list[messaging.Message]) -> Future[list[Outcome]]:
        futures = [self._pool.submit(self._send_one, message) for message in messages]
        return then(gather(futures), self._logged)

    @staticmethod
    def _logged(outcomes: list[Outcome]) -> list[Outcome]:
        log_summary(log, "web push", outcomes)
        return outcomes

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._http.close()

    def _send_one(self, message: messaging.Message) -> Outcome:
        try:
            subscription = json.loads(message.token or "")
            endpoint = subscription["endpoint"]
        except (ValueError, KeyError, TypeError):
            return Outcome.prune("BAD_SUBSCRIPTION")
        if not origin_allowed(endpoint, self._origins):
            return Outcome.prune("ORIGIN_NOT_ALLOWED")
        config = message.webpush or messaging.WebpushConfig()
        headers = dict(config.headers or {})
        ttl = int(headers.pop("TTL", 0))
        try:
            self._webpush(
                subscription,
                data=json.dumps(message.data or {}, separators=(",", ":")),
                vapid_private_key=self._vapid,
                vapid_claims={"sub": self._subject},
                ttl=ttl,
                headers=headers,
                timeout=self._timeout,
                requests_session=self._http,
            )
        except self._refused as exc:
            return _outcome_for(exc.response)
        except (requests.RequestException, OSError):
            return Outcome.retry("NO_ANSWER")
        except ValueError:  # keys that do not decode: the subscription is unusable
            return Outcome.prune("BAD_SUBSCRIPTION")
        return Outcome.ok()


def _outcome_for(response: requests.Response | None) -> Outcome:
    if response is None:
        return Outcome.retry("NO_ANSWER")
    status = response.status_code
    code = f"HTTP_{status}"
    if status in _GONE:
        return Outcome.prune(code)
    if status in _TRANSIENT:
        return Outcome.retry(code, retry_after_seconds(response.headers.get("Retry-After")))
    return Outcome.failed(code)
