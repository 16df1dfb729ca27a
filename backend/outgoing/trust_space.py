"""The MSSanté trust space: the only domains outgoing mail may go to.

ANS publishes the whitelist as XML, one `<Domaine>` per operator domain with its name in
`<Nom>` (DESIGN.md: `//Domaine/Nom`). The operator keeps that file where
`ESTAFETTE_TRUST_SPACE` points and refreshes it; we re-read it when its mtime changes.
Unset, the trust space is `*.mssante.fr`. A whitelist that cannot be read refuses every
recipient: we fail closed, never open.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

log = logging.getLogger("estafette.outgoing")

DEFAULT_PATTERNS = ("*.mssante.fr",)
PATIENT_DOMAIN = "patient.mssante.fr"


class TrustSpaceUnreadable(Exception):
    """The whitelist file exists but is not ANS's XML: nothing may be sent until fixed."""


@dataclass(frozen=True)
class TrustSpace:
    """Exact domains, plus `*.suffix` patterns that match any subdomain of the suffix."""

    domains: frozenset[str]
    suffixes: tuple[str, ...] = ()

    @classmethod
    def from_patterns(cls, patterns: Iterable[str]) -> TrustSpace:
        exact, suffixes = set(), []
        for raw in patterns:
            pattern = raw.strip().lower().rstrip(".")
            if pattern.startswith("*."):
                suffixes.append(pattern[1:])  # keep the dot: "*.a.fr" never matches "xa.fr"
            elif pattern:
                exact.add(pattern)
        return cls(frozenset(exact), tuple(suffixes))

    def allows(self, address: str) -> bool:
        """Is the address's domain inside the trust space? Malformed addresses are not."""
        domain = domain_of(address)
        if not domain:
            return False
        return domain in self.domains or any(domain.endswith(s) for s in self.suffixes)

    def outsiders(self, addresses: Iterable[str]) -> list[str]:
        """The addresses that may not receive mail, in the order given."""
        return [a for a in addresses if not self.allows(a)]


def domain_of(address: str) -> str | None:
    _name, addr = parseaddr(address)
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in addr):
        return None
    return domain.lower().rstrip(".")


def is_patient_address(address: str) -> bool:
    """MSSanté: patients' mailboxes live under @patient.mssante.fr (DESIGN.md)."""
    return domain_of(address) == PATIENT_DOMAIN


def parse_whitelist(data: bytes) -> TrustSpace:
    """Read ANS's XML list: every `Domaine/Nom`, whatever the namespace (defused parser)."""
    try:
        root = ElementTree.fromstring(data)
    except (ElementTree.ParseError, DefusedXmlException) as exc:
        raise TrustSpaceUnreadable(f"not a readable XML whitelist: {type(exc).__name__}") from exc
    names = []
    for element in root.iter():
        if _local_name(element.tag) != "Domaine":
            continue
        for child in element:
            if _local_name(child.tag) == "Nom" and child.text and child.text.strip():
                names.append(child.text)
    if not names:
        raise TrustSpaceUnreadable("the whitelist names no Domaine/Nom")
    return TrustSpace.from_patterns(names)


def _local_name(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


class _Cache:
    """One parsed whitelist per (path, mtime, size): a refreshed file applies at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, int, int] | None = None
        self._value: TrustSpace | None = None

    def load(self, path: Path) -> TrustSpace:
        try:
            info = path.stat()
        except OSError as exc:
            raise TrustSpaceUnreadable(f"cannot read the whitelist {path}: {exc}") from exc
        key = (str(path), info.st_mtime_ns, info.st_size)
        with self._lock:
            if key != self._key or self._value is None:
                self._value = parse_whitelist(path.read_bytes())
                self._key = key
                log.info("trust space loaded: %d domains", len(self._value.domains))
            return self._value


_cache = _Cache()


def load_trust_space(path: Path | None) -> TrustSpace:
    """The trust space from ESTAFETTE_TRUST_SPACE, or `*.mssante.fr` when unset."""
    if path is None:
        return TrustSpace.from_patterns(DEFAULT_PATTERNS)
    return _cache.load(path)
