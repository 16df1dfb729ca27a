"""End-to-end encrypted previews: sender and subject, readable by one device only.

Off unless the establishment sets `ESTAFETTE_PUSH_PREVIEWS=on`. A device that wants
previews registers a random 32-byte push key at sign-in; the gateway keeps it encrypted at
rest and seals each preview for that device with AES-256-GCM (NIST SP 800-38D):

    enc = base64(nonce[12] || ciphertext || tag[16])       (standard alphabet, padded)
    kid = hex(SHA-256(push_key))[:16]                      (which key sealed it)
    AAD = "estafette-preview-v1|" + mailbox id             (binds it to the push)
    plaintext = UTF-8 JSON {"from": "...", "subject": "..."}

Google and Apple carry ciphertext only. The README shows app developers how to open it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
AAD_PREFIX = b"estafette-preview-v1|"
# FCM allows 4 KB of data per message: keep the preview well inside it.
MAX_FROM_CHARS = 100
MAX_SUBJECT_CHARS = 200


def key_id(key: bytes) -> str:
    """A short, stable name for a push key, so the app knows which key to use."""
    return hashlib.sha256(key).hexdigest()[:16]


def preview_of(sender: dict | None, subject: str | None) -> dict[str, str]:
    """What a preview says: the sender's display name (or address) and the subject."""
    sender = sender or {}
    name = sender.get("name") or sender.get("address") or ""
    return {"from": name[:MAX_FROM_CHARS], "subject": (subject or "")[:MAX_SUBJECT_CHARS]}


def seal(key: bytes, mailbox_id: str, preview: dict[str, str]) -> dict[str, str]:
    """The `enc` and `kid` data fields of one device's push."""
    if len(key) != KEY_BYTES:
        raise ValueError("a push key is 32 bytes")
    nonce = os.urandom(NONCE_BYTES)
    plaintext = json.dumps(preview, ensure_ascii=False, separators=(",", ":")).encode()
    sealed = AESGCM(key).encrypt(nonce, plaintext, AAD_PREFIX + mailbox_id.encode())
    return {"enc": base64.b64encode(nonce + sealed).decode("ascii"), "kid": key_id(key)}


def open_sealed(key: bytes, mailbox_id: str, enc: str) -> dict[str, str]:
    """What the app does: decrypt `enc` (raises cryptography's InvalidTag if tampered)."""
    raw = base64.b64decode(enc)
    plaintext = AESGCM(key).decrypt(
        raw[:NONCE_BYTES], raw[NONCE_BYTES:], AAD_PREFIX + mailbox_id.encode()
    )
    return json.loads(plaintext)
