"""The one check for every header value a user (or a received mail) can shape.

Python's `email` decodes RFC 2047 encoded words when it folds a header, and 3.11 does
not re-check the result (`verify_generated_headers` came later): `=?utf-8?q?a=0D=0Ab?=`
in a subject, a display name or a file name becomes a real line break, hence a forged
header. So a value is judged after decoding, the way the library will see it.
"""

from __future__ import annotations

from collections.abc import Iterator
from email import errors as email_errors
from email.header import decode_header, ecre

from backend import errors

# Everything a mail reader may take for the end of a line, and NUL (RFC 5322 §2.2).
_BREAKS = frozenset("\r\n\x0b\x0c\x85\u2028\u2029\x00")
_BREAK_BYTES = (b"\r", b"\n", b"\x0b", b"\x0c", b"\x00")
SINGLE_LINE = "A single line of text."


def _decoded_words(value: str) -> Iterator[str | bytes]:
    """Each RFC 2047 encoded word of `value`, wherever it sits, as bytes and as text."""
    for match in ecre.finditer(value):
        try:
            parts = decode_header(match.group(0))
        except (email_errors.HeaderParseError, ValueError):
            continue  # not decodable: the email package leaves it as literal text
        for data, charset in parts:
            if isinstance(data, str):
                yield data
                continue
            yield data  # CR, LF, NUL are visible in the bytes whatever the charset
            try:
                text = data.decode(charset or "ascii", "replace")
            except LookupError:
                continue
            yield text


def is_safe_header_value(value: str) -> bool:
    """True when neither the value nor any encoded word in it holds a line break or NUL."""
    if any(c in _BREAKS for c in value):
        return False
    for decoded in _decoded_words(value):
        if isinstance(decoded, bytes):
            if any(b in decoded for b in _BREAK_BYTES):
                return False
        elif any(c in _BREAKS for c in decoded):
            return False
    return True


def check_header_value(field: str, value: str | None) -> None:
    """Refuse (422 `unsafe_header`) a value that would start a new header line."""
    if value is not None and not is_safe_header_value(value):
        raise errors.UnsafeHeader(field)
