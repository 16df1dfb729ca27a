"""What a forward and a reply-all carry over from the original message.

A forward keeps the original's attachments (a lab report, an IHE_XDM.ZIP) as attachments
of the new message, its text quoted under the usual "Message transféré" block, as the
desktop client does; a reply-all writes to everyone the original went to, but the mailbox
itself. The original is read from the server, whole, as the desktop would read it.
"""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

from backend.outgoing.compose import Attachment
from backend.storage.models import Message


def forwarded(raw: bytes, text: str) -> tuple[str, tuple[Attachment, ...]]:
    """The new message's text (the user's, then the original quoted) and the original's
    attachments, decoded, to attach again."""
    original: EmailMessage = message_from_bytes(raw, policy=policy.default)  # type: ignore[assignment]
    header = "\n".join(
        f"{label} : {_header(original, name)}"
        for label, name in (("De", "From"), ("Date", "Date"), ("Objet", "Subject"), ("À", "To"))
    )
    body = original.get_body(("plain",))
    quoted = _text_of(body) if body is not None else ""
    attachments = tuple(
        Attachment(
            filename=part.get_filename() or "piece-jointe",
            content_type=part.get_content_type(),
            data=part.get_payload(decode=True) or b"",
        )
        for part in original.iter_attachments()
        if not part.is_multipart()
    )
    intro = f"{text.rstrip()}\n\n-------- Message transféré --------\n{header}\n\n{quoted}"
    return intro, attachments


def reply_all_cc(
    original: Message, own_address: str, to: tuple[str, ...], cc: tuple[str, ...]
) -> tuple[str, ...]:
    """`cc` plus everyone the original went to or came from, but us and those already named."""
    recipients = original.recipients or {}
    named = {a.lower() for a in (*to, *cc, own_address)}
    everyone = [original.sender, *recipients.get("to", []), *recipients.get("cc", [])]
    extra: list[str] = []
    for entry in everyone:
        address = ((entry or {}).get("address") or "").strip()
        if address and address.lower() not in named:
            named.add(address.lower())
            extra.append(address)
    return (*cc, *extra)


def _header(message: EmailMessage, name: str) -> str:
    try:
        return str(message.get(name, ""))
    except (ValueError, IndexError, TypeError):  # a header that does not parse
        return ""


def _text_of(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset: what bytes we have
        content = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
    return str(content).replace("\r\n", "\n")
