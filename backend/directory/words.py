"""Searchable words: accent-folded, lower-cased, split on anything but letters and digits.

One function folds both what is indexed and what is typed, so SQLite and PostgreSQL
match the same way ("Hélène" is found by "hel", "O'Brien" by "obr" and by "brien",
"Jean-Pierre" by "pierre").
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

MAX_TERM = 64  # directory_terms.term
MAX_QUERY_WORDS = 6
# Ligatures NFKD leaves whole: French names and organisations use them.
_LIGATURES = {"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae", "ß": "ss"}


def _ascii_of(char: str) -> str:
    decomposed = unicodedata.normalize("NFKD", _LIGATURES.get(char, char))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


# Latin letters with diacritics (Latin-1 to Latin Extended-B) folded by one translate():
# a directory import folds millions of words, so no per-character normalisation there.
_FOLD = str.maketrans({chr(c): _ascii_of(chr(c)) for c in range(0xC0, 0x250)})
_SPLIT = re.compile(r"[^a-z0-9]+")
# Too common to tell anyone apart: not indexed, and skipped in a query unless being typed.
STOP_WORDS = frozenset(
    ["de", "du", "des", "la", "le", "les", "et", "en", "au", "aux", "sur", "sous", "d", "l"]
)
# Parts of every MSSanté domain: words that would match everyone.
_DOMAIN_NOISE = frozenset({"fr", "mssante", "com", "net", "org", "eu"})


def fold(text: str) -> str:
    """Lower-case ASCII without accents; every other character becomes a space."""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text).translate(_FOLD)
    return _SPLIT.sub(" ", text.lower()).strip()


def _telling(word: str) -> bool:
    return len(word) > 1 and word not in STOP_WORDS


def words_of(values: Iterable[str | None]) -> list[str]:
    """The distinct telling words of these values, in order, cut to the index's width.

    Apostrophes and hyphens also give the joined form ("O'Brien": brien, obrien).
    """
    seen: dict[str, None] = {}
    for value in values:
        if value:
            seen.update(dict.fromkeys(_value_words(value)))
    return list(seen)


@functools.lru_cache(maxsize=1 << 16)
def _value_words(value: str) -> tuple[str, ...]:
    """Cached: professions, cities and organisations repeat across thousands of lines."""
    found: dict[str, None] = {}
    for chunk in value.split():
        parts = fold(chunk).split()
        if len(parts) > 1:
            found.setdefault("".join(parts)[:MAX_TERM], None)
        for part in parts:
            if _telling(part):
                found.setdefault(part[:MAX_TERM], None)
    return tuple(found)


def address_words(address: str) -> list[str]:
    """The local part's words and the domain's telling labels (`chu-xyz`, not `fr`)."""
    local, _, domain = address.partition("@")
    return [w[:MAX_TERM] for w in fold(local).split() if _telling(w)] + _domain_words(domain)


@functools.lru_cache(maxsize=1 << 14)
def _domain_words(domain: str) -> list[str]:
    """Cached: an establishment's domain is on thousands of lines (never handed out: the
    caller's `+` copies it)."""
    labels = [label for label in fold(domain).split() if label not in _DOMAIN_NOISE]
    return [w[:MAX_TERM] for w in labels if _telling(w)]


def as_text(words: list[str]) -> str:
    """The stored `words` column: each word preceded by a space (word-prefix LIKE)."""
    return "".join(f" {word}" for word in words)


def query_words(query: str) -> list[str]:
    """What the user typed, as words to AND, longest first (the most selective drives).

    Words the index leaves out are dropped, but the last one: it is still being typed."""
    typed = fold(query).split()
    kept = [w for w in typed[:-1] if _telling(w)] + typed[-1:]
    words = list(dict.fromkeys(w[:MAX_TERM] for w in kept))
    words.sort(key=len, reverse=True)
    return words[:MAX_QUERY_WORDS]
