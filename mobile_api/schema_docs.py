"""Descriptions and examples for the public schemas of the OpenAPI document, in one place.

A schema's own `metadata={"description": ...}` wins; what it leaves out is filled from here
when the document is built (`describe_field`, `SchemaDocs`), so the marshmallow schemas stay
about validation. Keyed by schema class name; a subclass inherits its parents' entries
(Message reads Envelope's). What a phone or tablet app sees is described; admin schemas
keep their own metadata.
"""

from __future__ import annotations

from typing import Any

from apispec import BasePlugin

_ENVELOPE = {
    "id": "Opaque message id, stable while the message stays in its folder.",
    "mailbox_id": "The mailbox the message is in.",
    "folder": "The IMAP folder the message is in.",
    "subject": "Subject, decoded; null when the message has none.",
    "from": "The sender; null when the header is missing.",
    "to": "Recipients (To).",
    "cc": "Copy recipients (Cc).",
    "date": "The Date header, or the server's arrival time when it is missing.",
    "seen": "Read (IMAP \\Seen).",
    "flagged": "Flagged for follow-up (IMAP \\Flagged).",
    "answered": "Replied to (IMAP \\Answered).",
    "has_attachments": "Has at least one attachment.",
    "size": "Size on the server, in bytes.",
    "mdn_requested": "The sender asked for a read receipt (Disposition-Notification-To).",
    "urgent": "The sender marked it urgent (Importance: high or X-Priority 1-2).",
    "malformed": "The message could not be parsed: shown as raw text.",
    "patient": "The patient named by the MSSanté X-MSS headers or an attached CDA, if any.",
    "receipts": "Read and delivery reports received for a message sent from here.",
}

DOCS: dict[str, dict[str, Any]] = {
    "ProblemSchema": {
        "description": "RFC 9457 problem details: every error answer. Act on `code`.",
        "properties": {
            "type": "Always `about:blank`: `code` names the problem.",
            "status": "The HTTP status, repeated.",
            "title": "A short English summary, for logs.",
            "detail": "What happened, in English, for logs: never shown as is to a user.",
            "code": "The stable machine code: each answer lists the codes it can carry.",
            "errors": "For validation errors: the messages by field name.",
        },
        "example": {
            "type": "about:blank",
            "status": 401,
            "title": "Token expired",
            "code": "token_expired",
            "detail": "Refresh the session or sign in",
        },
    },
    "LoginSchema": {
        "description": "The first factor: the account's username and password.",
        "properties": {"username": "The account name.", "password": "The account password."},
        "example": {"username": "dr.martin", "password": "correct horse battery staple"},
    },
    "LoginResultSchema": {
        "description": "A 5-minute token for the second factor, and which one to use.",
        "properties": {
            "mfa_token": "Send it as the bearer token of the `/auth/otp*` calls.",
            "mfa": "The second factors this account can use.",
            "enrollment_required": "True: enrol TOTP first (`/auth/otp/enroll`, `activate`).",
        },
        "example": {"mfa_token": "eyJhbGciOiJFZERTQSIs…", "mfa": ["totp"]},
    },
    "EnrollResultSchema": {
        "description": "A new TOTP secret to load into an authenticator app.",
        "properties": {
            "secret": "The base32 secret.",
            "otpauth_uri": "The same as an otpauth:// URI.",
            "qr_svg": "The URI as a QR code, in SVG.",
        },
    },
    "CodeSchema": {
        "description": "A 6-digit TOTP code, or a recovery code.",
        "example": {"code": "492039"},
    },
    "ActivateResultSchema": {
        "description": "TOTP is on: ten single-use recovery codes, shown once.",
        "properties": {"recovery_codes": "Keep them safe: each opens one session."},
    },
    "DeviceInSchema": {
        "description": "The device a session is opened for.",
        "properties": {
            "name": "A name the user recognises in their device list.",
            "platform": "`android`, `ios` or `web`.",
            "push_token": "The FCM registration token, if the app has one yet.",
        },
        "example": {"name": "Pixel de garde", "platform": "android"},
    },
    "OtpSignInSchema": {
        "description": "The second factor, and the device to open the session for.",
        "properties": {"device": "The device signing in."},
        "example": {"code": "492039", "device": {"name": "Pixel de garde", "platform": "android"}},
    },
    "CpsSignInSchema": {
        "description": "A CPS card sign-in: the card comes from the TLS proxy.",
        "properties": {"device": "The device signing in."},
    },
    "SessionSchema": {
        "description": "A device session: a short access token and a single-use refresh token.",
        "properties": {
            "access_token": "Bearer token for every other call.",
            "refresh_token": "Bearer token for `/auth/refresh` only; single use.",
            "token_type": "Always `Bearer`.",
            "expires_in": "Seconds the access token lasts.",
            "device_id": "This device's id (`/devices/{device_id}`).",
        },
        "example": {
            "access_token": "eyJhbGciOiJFZERTQSIs…",
            "refresh_token": "eyJhbGciOiJFZERTQSIs…",
            "token_type": "Bearer",
            "expires_in": 600,
            "device_id": "dev_Qm2kX9",
        },
    },
    "DeviceSchema": {
        "description": "One of the user's signed-in devices.",
        "properties": {
            "id": "Opaque device id.",
            "name": "The name given at sign-in.",
            "platform": "`android`, `ios` or `web`.",
            "has_push_token": "The device registered a push token or subscription.",
            "created_at": "When the session was opened.",
            "last_seen_at": "Its last call.",
            "last_push_at": "Its last push, if any.",
            "last_push_status": "How its last push went, if any.",
            "current": "The device making this call.",
        },
    },
    "PushTokenSchema": {
        "description": "The device's FCM registration token.",
        "properties": {"push_token": "From the Firebase SDK.", "platform": "The device's."},
    },
    "SubscriptionKeysSchema": {
        "description": "The browser subscription's keys (RFC 8291).",
        "properties": {"p256dh": "The browser's public key.", "auth": "The auth secret."},
    },
    "WebPushSubscriptionSchema": {
        "description": "A browser's `PushSubscription`, as `JSON.stringify` gives it.",
        "properties": {
            "endpoint": "The push service URL (one of the allowed push services).",
            "expirationTime": "When the subscription expires, if it does.",
            "keys": "Its encryption keys.",
        },
    },
    "SyncStateSchema": {
        "description": "How the gateway's copy of the mailbox is doing.",
        "properties": {
            "state": "`ok`, `pending`, `error` or `auth_failed`.",
            "detail": "What went wrong, when it did.",
        },
    },
    "MailboxSchema": {
        "description": "A mailbox the user may read: their own or one delegated to them.",
        "properties": {
            "id": "Opaque mailbox id.",
            "address": "The MSSanté address.",
            "kind": "PER (a person), ORG (a service), APP (an application), CAB (a practice).",
            "display_name": "A name for lists.",
            "role": "The user's role: `owner` or `delegate`.",
            "unread": "Unread messages in its watched folders.",
            "total": "Messages in its watched folders.",
            "sync": "Its sync state.",
        },
    },
    "FolderSchema": {
        "description": "An IMAP folder of a mailbox.",
        "properties": {"unread": "Unread messages.", "total": "Messages."},
    },
    "FolderWatchSchema": {
        "description": "Watch a folder (sync and push its new mail) or stop.",
        "properties": {"folder": "The folder's name, from `GET .../folders`."},
        "example": {"folder": "Résultats", "watched": True},
    },
    "AddressSchema": {
        "description": "A mail address with its display name.",
        "properties": {"name": "Display name, if any.", "address": "The address."},
        "example": {"name": "Dr Claire Durand", "address": "claire.durand@ch-exemple.mssante.fr"},
    },
    "PatientSchema": {
        "description": "The patient a message is about (X-MSS headers, or an attached CDA).",
        "properties": {
            "ins": "The national health identifier (INS), when given.",
            "name": "The patient's name, when given.",
            "birth_date": "Birth date, when given.",
        },
    },
    "ReceiptSchema": {
        "description": "A read or delivery report received for a sent message.",
        "properties": {"at": "When it arrived.", "recipient": "Whose report it is."},
    },
    "EnvelopeSchema": {
        "description": "A message as listed: its headers and flags, no body.",
        "properties": _ENVELOPE,
    },
    "MessagePageSchema": {
        "description": "One page of a listing, newest first.",
        "properties": {
            "items": "The messages of this page.",
            "next": "Pass as `cursor` for the next page; null on the last one.",
        },
    },
    "ChangedMessageSchema": {"description": "A message as the delta sync reports it."},
    "ChangeSchema": {
        "description": "One change since the client's state.",
        "properties": {
            "op": "`upsert`: add or replace; `delete`: remove.",
            "message": "The message (its id only for a delete).",
        },
    },
    "SyncSchema": {
        "description": "The changes since a state, and the state to ask from next.",
        "properties": {"changes": "In the order they happened."},
    },
    "QuietHoursSchema": {
        "description": "A daily window when pushes wait.",
        "properties": {"start": "Local time, HH:MM.", "end": "Local time, HH:MM."},
        "example": {"start": "22:00", "end": "07:00", "timezone": "Europe/Paris"},
    },
    "NotificationSettingsSchema": {"description": "The user's push settings."},
    "DocumentSchema": {
        "description": "A structured document (CDA) found in an attachment or an IHE XDM zip.",
        "properties": {
            "title": "The document's title.",
            "code_display": "What `code` means.",
            "class_code": "XDS classCode.",
            "content_type": "Its media type.",
            "patient": "The patient it names, if any.",
        },
    },
    "AttachmentSchema": {
        "description": "An attachment; download it by its `part`.",
        "properties": {
            "filename": "Its file name, if any.",
            "content_type": "Its media type.",
            "size": "Its size in bytes.",
            "documents": "Structured documents found inside, if any.",
            "warnings": "What could not be read in it.",
        },
    },
    "MessageSchema": {
        "description": "A whole message: headers, text, sanitised HTML and attachments.",
        "properties": {
            "text": "The plain text body.",
            "headers": "The MSSanté X-MSS headers.",
            "attachments": "Its attachments.",
        },
    },
    "FlagsSchema": {
        "description": "Flags to set or clear; those left out are not changed.",
        "properties": {"seen": "Read.", "flagged": "Flagged for follow-up."},
        "example": {"seen": True},
    },
    "MoveSchema": {"description": "Where to move a message.", "example": {"folder": "Archives"}},
    "SendMessageSchema": {
        "description": "A message to send from one of the user's mailboxes.",
        "properties": {
            "to": "Recipients: addresses in the MSSanté trust space.",
            "cc": "Copy recipients.",
            "subject": "The subject.",
            "text": "The plain text body.",
            "in_reply_to": "The id of the message this answers.",
            "request_read_receipt": "Ask the recipients for a read receipt.",
        },
        # No example: schemathesis sends examples, and a real send needs a reachable server.
    },
    "SentMessageSchema": {
        "description": "What became of a sent message.",
        "properties": {
            "dsn_requested": "Delivery reports were asked for.",
            "sent_copy": "A copy was stored in the Sent folder.",
        },
    },
    "DraftSchema": {
        "description": "A draft to save in the mailbox's Drafts folder.",
        "properties": {
            "to": "Recipients.",
            "cc": "Copy recipients.",
            "bcc": "Blind copy recipients.",
            "subject": "The subject.",
            "text": "The plain text body.",
        },
    },
    "SavedDraftSchema": {
        "description": "The saved draft.",
        "properties": {"message_id": "Its id, to replace or discard it."},
    },
    "ReadReceiptSchema": {"description": "Send the read receipt the sender asked for."},
    "SignatureSchema": {"description": "The user's signature, added to mail on request."},
    "WebPushKeySchema": {"description": "The gateway's VAPID public key."},
    "TestPushSchema": {"description": "How the test push went."},
}


def _entries(schema_class: type) -> list[dict[str, Any]]:
    """This schema's entry, then its parents' (nearest first)."""
    return [DOCS[klass.__name__] for klass in schema_class.__mro__ if klass.__name__ in DOCS]


def describe_field(converter: Any, field: Any, ret: dict, **kwargs: Any) -> dict:
    """A marshmallow-plugin attribute function: a field without a description gets ours."""
    if "description" in ret or field.parent is None:
        return {}
    name = field.data_key or field.name
    for entry in _entries(type(field.parent)):
        if name in entry.get("properties", {}):
            return {"description": entry["properties"][name]}
    return {}


class SchemaDocs(BasePlugin):
    """A schema component without a description or an example gets ours."""

    def schema_helper(self, name: str, definition: Any, **kwargs: Any) -> dict | None:
        schema = kwargs.get("schema")
        if schema is None:
            return None
        schema_class = schema if isinstance(schema, type) else type(schema)
        entries = _entries(schema_class)
        if not entries or schema_class.__name__ not in DOCS:
            return None
        entry = DOCS[schema_class.__name__]
        extra: dict[str, Any] = {"description": entry["description"]}
        if "example" in entry:
            extra["examples"] = [entry["example"]]
        return extra
