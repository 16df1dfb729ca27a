"""The pushes the gateway sends, as OpenAPI 3.1 `webhooks`: what an app receives from FCM,
APNs or its browser's push service, beside the calls it makes.

Built from `backend.push.payloads`, the one payload builder, so the document names the
types and version it really sends. A push says only that something changed: no person,
sender, subject or file name, ever.
"""

from __future__ import annotations

from typing import Any

from backend.push import payloads

_KINDS = {
    payloads.NEW_MAIL: "New mail in a mailbox: a visible alert (`loc-key` "
    f"`{payloads.ALERT_LOC_KEY}`), collapsed per mailbox.",
    payloads.MAIL_READ: "Mail was read elsewhere: a silent push that updates the badge.",
    payloads.TEST: "The push asked for with `POST /devices/{device_id}/test-push` "
    f"(`loc-key` `{payloads.TEST_LOC_KEY}`); it carries only `v` and `type`.",
}

PUSH_DATA = {
    "type": "object",
    "description": "The data block of every push (FCM data values are strings). An app "
    "must ignore a `type` it does not know: `auth.required` (sign in again) is coming.",
    "required": ["v", "type"],
    "properties": {
        "v": {
            "type": "string",
            "const": payloads.PAYLOAD_VERSION,
            "description": "Payload version.",
        },
        "type": {
            "type": "string",
            "enum": list(_KINDS),
            "description": "What happened; one webhook below for each.",
            "examples": [payloads.NEW_MAIL],
        },
        "mailbox": {
            "type": "string",
            "maxLength": 64,
            "description": "Opaque mailbox id (absent from `test`).",
            "examples": ["mbx_7Hq2"],
        },
        "unread": {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "Unread count in the mailbox, as a string.",
            "examples": ["3"],
        },
        "urgent": {
            "type": "string",
            "enum": ["1"],
            "description": "Present when the sender marked the mail urgent.",
        },
        "enc": {
            "type": "string",
            "description": "A preview sealed for this device's `push_key` (when enabled).",
        },
        "kid": {"type": "string", "description": "Which device key sealed `enc`."},
    },
    "examples": [{"v": "1", "type": "mail.new", "mailbox": "mbx_7Hq2", "unread": "3"}],
}


def webhooks() -> dict[str, Any]:
    """One webhook per push type, each posting the data block."""
    return {
        kind: {
            "post": {
                "operationId": "push_" + kind.replace(".", "_"),
                "tags": ["push"],
                "summary": f"Push `{kind}`",
                "description": description,
                "security": [],
                "requestBody": {
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/PushData"}}
                    }
                },
                "responses": {"200": {"description": "Delivered to the app."}},
            }
        }
        for kind, description in _KINDS.items()
    }
