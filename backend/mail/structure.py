"""Walks an IMAP BODYSTRUCTURE (imapclient's BodyData) into its leaf parts.

The sync decides from the structure alone which parts are worth fetching, so a message
is never downloaded whole just to learn what it carries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LeafPart:
    section: str  # the BODY[<section>] to fetch, numbered as RFC 3501 §6.4.5 says
    content_type: str
    filename: str | None
    disposition: str | None
    encoding: str
    size: int


def leaf_parts(bodystructure: Any) -> Iterator[LeafPart]:
    """Every non-multipart part, depth first; nothing for a structure we cannot read."""
    if bodystructure is None:
        return
    try:
        yield from _walk(bodystructure, "")
    except (AttributeError, IndexError, TypeError, ValueError):
        return


def _walk(part: Any, prefix: str) -> Iterator[LeafPart]:
    if isinstance(part[0], list):
        for index, child in enumerate(part[0], start=1):
            yield from _walk(child, f"{prefix}{index}" if not prefix else f"{prefix}.{index}")
        return
    section = prefix or "1"
    params = _pairs(part[2])
    disposition, disposition_params = _disposition(part)
    filename = disposition_params.get("filename") or params.get("name")
    yield LeafPart(
        section=section,
        content_type=f"{_text(part[0])}/{_text(part[1])}".lower(),
        filename=filename,
        disposition=disposition,
        encoding=_text(part[5]).lower() if part[5] else "7bit",
        size=int(part[6] or 0),
    )


def _disposition(part: Any) -> tuple[str | None, dict[str, str]]:
    """The extension data has no fixed index (text parts carry a line count): search it."""
    for item in part[7:]:
        if (
            isinstance(item, tuple)
            and len(item) == 2
            and isinstance(item[0], bytes)
            and item[0].lower() in (b"attachment", b"inline")
        ):
            return item[0].decode().lower(), _pairs(item[1])
    return None, {}


def _pairs(value: Any) -> dict[str, str]:
    if not isinstance(value, tuple):
        return {}
    items = list(value)
    return {_text(k).lower(): _text(v) for k, v in zip(items[::2], items[1::2], strict=False)}


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)
