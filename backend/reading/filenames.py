"""File names as people may see them: the one cleaning for display, download and upload.

A sender controls an attachment's name. Control characters, bidirectional overrides
(`r\\u202egnp.exe` shows as `rexe.png`), zero-width marks and line separators make a
name lie about what it is or break the header that carries it, so they go; so does any
path, since a name only ever names one file.
"""

from __future__ import annotations

import re
import unicodedata

MAX_FILENAME_CHARS = 255
# Cc controls, Cf format marks (bidi overrides and isolates, zero-width), Cs lone
# surrogates, Co private use, Cn unassigned; Zl and Zp are line and paragraph separators.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def clean_filename(name: str | None) -> str | None:
    """The base name without hidden or line-breaking characters; None if nothing is left."""
    base = re.split(r"[/\\]", name or "")[-1]
    base = "".join(c for c in base if unicodedata.category(c) not in _HIDDEN_CATEGORIES)
    base = base.strip(" .")[:MAX_FILENAME_CHARS].strip(" .")
    return base or None
