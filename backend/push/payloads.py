"""The one place that builds push payloads (API.md, "Push payload (FCM HTTP v1)").

A push crosses Google's and Apple's infrastructure, outside the MSSanté trust space, so
it says only that something changed in a mailbox: an opaque mailbox id and a count.
Nothing here may identify a person, a sender, a subject, an address or a file name
(DESIGN.md, "No health data leaves through a side channel"). The app fetches the rest
over the authenticated API.
"""

from __future__ import annotations

import base64
import hashlib
import re

from firebase_admin import messaging

PAYLOAD_VERSION = "1"
NEW_MAIL = "mail.new"
MAIL_READ = "mail.read"
AUTH_REQUIRED = "auth.required"
TEST = "test"
TTL_SECONDS = 86400
TEST_TTL_SECONDS = 60  # a test that arrives an hour late answers nothing
TEST_LOC_KEY = "TEST_PUSH"
AUTH_LOC_KEY = "SIGN_IN_AGAIN"
# The app's localised "new secure message" text: the alert carries a key, not words.
ALERT_LOC_KEY = "NEW_SECURE_MESSAGE"
_APNS_COLLAPSE_ID_MAX = 64  # bytes, Apple's limit on apns-collapse-id


def new_mail(
    token: str,
    mailbox_id: str,
    unread: int,
    sealed: dict[str, str] | None = None,
    *,
    urgent: bool = False,
    web: bool = False,
) -> messaging.Message:
    """A visible "new secure message" push for one device, collapsed per mailbox.

    Exactly API.md's payload: only the opaque mailbox id and the unread count go out.
    `sealed` is this device's encrypted preview (`enc`, `kid` from `backend.push.previews`),
    when the establishment enabled previews and the device registered a key.
    `urgent` (the sender marked the mail urgent) adds `"urgent": "1"` and, on iOS, the
    time-sensitive interruption level that lets it through a Focus: a flag, still no content.
    """
    data = _data(NEW_MAIL, mailbox_id, unread)
    if sealed:
        data.update(enc=sealed["enc"], kid=sealed["kid"])
    if urgent:
        data["urgent"] = "1"
    if web:
        return _for_browser(data, token, mailbox_id, urgency="high")
    message = messaging.Message(
        data=data,
        android=messaging.AndroidConfig(priority="high", collapse_key=mailbox_id, ttl=TTL_SECONDS),
        apns=messaging.APNSConfig(
            headers={"apns-priority": "10", "apns-collapse-id": mailbox_id},
            payload=messaging.APNSPayload(
                aps=messaging.Aps(
                    alert=messaging.ApsAlert(loc_key=ALERT_LOC_KEY),
                    mutable_content=True,
                    thread_id=mailbox_id,
                    custom_data={"interruption-level": "time-sensitive"} if urgent else None,
                )
            ),
        ),
    )
    return _addressed(message, token)


def mail_read(token: str, mailbox_id: str, unread: int, *, web: bool = False) -> messaging.Message:
    """A silent push that clears what was read elsewhere and updates the badge.

    Same opaque fields as `new_mail` (API.md). On iOS it is a background push
    (content-available, priority 5 as Apple requires, no alert); on Android a
    normal-priority data message. The shared collapse key lets it replace a `mail.new`
    still waiting for an offline device.
    """
    if web:
        return _for_browser(_data(MAIL_READ, mailbox_id, unread), token, mailbox_id, "normal")
    message = messaging.Message(
        data=_data(MAIL_READ, mailbox_id, unread),
        android=messaging.AndroidConfig(
            priority="normal", collapse_key=mailbox_id, ttl=TTL_SECONDS
        ),
        apns=messaging.APNSConfig(
            headers={
                "apns-priority": "5",
                "apns-push-type": "background",
                "apns-collapse-id": mailbox_id,
            },
            payload=messaging.APNSPayload(aps=messaging.Aps(content_available=True, badge=unread)),
        ),
    )
    return _addressed(message, token)


def test(token: str) -> messaging.Message:
    """The push a user asks for to check that notifications reach a device: a type and the
    payload version, nothing else; visible, so the user sees it arrive."""
    data = {"v": PAYLOAD_VERSION, "type": TEST}
    if is_web_push(token):
        return _for_browser(data, token, TEST, urgency="high", ttl=TEST_TTL_SECONDS)
    message = messaging.Message(
        data=data,
        android=messaging.AndroidConfig(priority="high", ttl=TEST_TTL_SECONDS),
        apns=messaging.APNSConfig(
            headers={"apns-priority": "10"},
            payload=messaging.APNSPayload(
                aps=messaging.Aps(alert=messaging.ApsAlert(loc_key=TEST_LOC_KEY))
            ),
        ),
    )
    return _addressed(message, token)


def auth_required(token: str, *, web: bool = False) -> messaging.Message:
    """Ask the owner of an `oauth_user` mailbox to sign in again: the provider refused to
    refresh their token. A type and the payload version only: not even which mailbox."""
    data = {"v": PAYLOAD_VERSION, "type": AUTH_REQUIRED}
    if web:
        return _for_browser(data, token, AUTH_REQUIRED.replace(".", "-"), urgency="normal")
    message = messaging.Message(
        data=data,
        android=messaging.AndroidConfig(
            priority="normal", collapse_key=AUTH_REQUIRED, ttl=TTL_SECONDS
        ),
        apns=messaging.APNSConfig(
            headers={"apns-priority": "5", "apns-collapse-id": AUTH_REQUIRED},
            payload=messaging.APNSPayload(
                aps=messaging.Aps(alert=messaging.ApsAlert(loc_key=AUTH_LOC_KEY))
            ),
        ),
    )
    return _addressed(message, token)


def is_web_push(token: str) -> bool:
    """A browser's Web Push subscription (stored as JSON by `PUT /devices/{id}/web-push`),
    not an FCM registration token (which the Firebase web SDK also gives browsers)."""
    return token.startswith("{")


def _for_browser(
    data: dict[str, str], subscription: str, mailbox_id: str, urgency: str, ttl: int = TTL_SECONDS
) -> messaging.Message:
    """The same data block for a browser's push service (`backend.push.webpush`): it is
    encrypted for the browser; only these headers are seen on the way. `Topic` (RFC 8030
    §5.4: at most 32 base64url characters) is the mailbox, as FCM's collapse key."""
    topic = mailbox_id
    if len(topic) > 32 or not re.fullmatch(r"[A-Za-z0-9_-]+", topic):
        digest = hashlib.sha256(mailbox_id.encode()).digest()
        topic = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()[:32]
    message = messaging.Message(
        data=data,
        webpush=messaging.WebpushConfig(
            headers={"Urgency": urgency, "Topic": topic, "TTL": str(ttl)}
        ),
    )
    return _addressed(message, subscription)


def _addressed(message: messaging.Message, token: str) -> messaging.Message:
    """Address the message to the device's push token, in FCM's `token` field.

    FCM now prefers Firebase Installation IDs (`fid`) and firebase-admin 7.7 warns on
    every `Message(token=...)`, but `token` still takes a registration token, and per
    Firebase support an FID too (firebase-android-sdk#8316): it works whichever the app
    registers. Setting the attribute after construction skips the per-message warning
    without touching the process-wide warning filters.
    """
    message.token = token
    return message


def _data(kind: str, mailbox_id: str, unread: int) -> dict[str, str]:
    """The data block both apps read; FCM data values must be strings."""
    if not mailbox_id or len(mailbox_id.encode()) > _APNS_COLLAPSE_ID_MAX:
        raise ValueError("mailbox id must be 1 to 64 bytes (it is the APNs collapse id)")
    if unread < 0:
        raise ValueError("unread count cannot be negative")
    return {"v": PAYLOAD_VERSION, "type": kind, "mailbox": mailbox_id, "unread": str(unread)}
