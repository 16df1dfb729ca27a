"""The ANS daily extraction of MSSanté mailboxes: its column layout, read line by line.

Published by the ANS, free to download without a key:
`https://service.annuaire.sante.fr/annuaire-sante-webservices/V300/services/extraction/Extraction_Correspondance_MSSante`
(a ZIP holding one `Extraction_Correspondance_MSSante_AAAAMMJJhhmm.txt`), mirrored
uncompressed on data.gouv.fr ("Annuaire santé - extraction des BAL MSSanté"). UTF-8 text,
`|`-separated, one header line, 31 columns (some exports end each line with a `|`), about
535,000 lines of PER and ORG mailboxes, and a few addresses on several lines. Column
order, as in the header: Type de BAL | Adresse BAL | Type Identifiant PP | Identifiant PP
| Identification nationale PP | Type identifiant structure | Identification Structure |
Service de rattachement | Civilité d'exercice | Nom d'exercice | Prénom d'exercice |
Catégorie profession | Libellé de catégorie profession | Code Profession | Libellé
Profession | Code savoir-faire | Libellé savoir-faire | Dématérialisation | Raison Sociale
structure BAL | Enseigne commerciale structure BAL | L2COMPLEMENTLOCALISATION |
L3COMPLEMENTDISTRIBUTION | L4NUMEROVOIE | L4COMPLEMENTNUMEROVOIE | NL4TYPEVOIE |
L4LIBELLEVOIE | L5LIEUDITMENTION | L6LIGNEACHEMINEMENT | Code postal | Département | Pays.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

COLUMNS = (
    "Type de BAL",
    "Adresse BAL",
    "Type Identifiant PP",
    "Identifiant PP",
    "Identification nationale PP",
    "Type identifiant structure",
    "Identification Structure",
    "Service de rattachement",
    "Civilité d'exercice",
    "Nom d'exercice",
    "Prénom d'exercice",
    "Catégorie profession",
    "Libellé de catégorie profession",
    "Code Profession",
    "Libellé Profession",
    "Code savoir-faire",
    "Libellé savoir-faire",
    "Dématérialisation",
    "Raison Sociale structure BAL",
    "Enseigne commerciale structure BAL",
    "L2COMPLEMENTLOCALISATION",
    "L3COMPLEMENTDISTRIBUTION",
    "L4NUMEROVOIE",
    "L4COMPLEMENTNUMEROVOIE",
    "NL4TYPEVOIE",
    "L4LIBELLEVOIE",
    "L5LIEUDITMENTION",
    "L6LIGNEACHEMINEMENT",
    "Code postal",
    "Département",
    "Pays",
)
SEPARATOR = "|"
KINDS = frozenset({"PER", "ORG", "APP", "CAB"})
_ADDRESS = re.compile(r"^[^@\s|]+@[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
_LEADING_POSTCODE = re.compile(r"^\s*\d{4,5}\s+")
# Column widths of directory_entries: a longer value is cut, never refused.
_WIDTH = {"national_id": 32, "civility": 32, "postcode": 16}


@dataclass(frozen=True)
class Entry:
    """One mailbox, as the directory describes it."""

    kind: str
    address: str
    national_id: str | None = None
    civility: str | None = None
    last_name: str | None = None
    first_name: str | None = None
    profession: str | None = None
    specialty: str | None = None
    organisation: str | None = None
    service: str | None = None
    street: str | None = None
    postcode: str | None = None
    city: str | None = None

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


@dataclass
class Tally:
    """What an import read: the lines kept, and those it could not use, by reason."""

    lines: int = 0
    entries: int = 0
    duplicates: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    first_malformed_lines: list[int] = field(default_factory=list)

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    def reject(self, line_number: int, reason: str) -> None:
        self.malformed[reason] = self.malformed.get(reason, 0) + 1
        if len(self.first_malformed_lines) < 10:
            self.first_malformed_lines.append(line_number)


def _clean(value: str, width: int = 300) -> str | None:
    return value.strip()[:width] or None


def parse_line(line: str) -> Entry | str:
    """An Entry, or the reason the line cannot be one (a short code, for the report)."""
    fields = line.rstrip("\r\n").split(SEPARATOR)
    if len(fields) == len(COLUMNS) + 1 and fields[-1].strip() == "":
        fields.pop()  # the trailing separator some exports write
    if len(fields) != len(COLUMNS):
        return "column_count"
    kind = fields[0].strip().upper()
    if kind not in KINDS:
        return "mailbox_type"
    address = fields[1].strip().lower()
    if len(address) > 254 or not _ADDRESS.match(address):
        return "address"
    street = " ".join(f.strip() for f in (fields[22], fields[23], fields[24], fields[25]) if f)
    city = _LEADING_POSTCODE.sub("", fields[27]) if fields[27].strip() else fields[26]
    return Entry(
        kind=kind,
        address=address,
        national_id=_clean(fields[4], _WIDTH["national_id"]),
        civility=_clean(fields[8], _WIDTH["civility"]),
        last_name=_clean(fields[9], 200),
        first_name=_clean(fields[10], 200),
        profession=_clean(fields[14], 200),
        specialty=_clean(fields[16], 200),
        organisation=_clean(fields[18] or fields[19]),
        service=_clean(fields[7]),
        street=_clean(street),
        postcode=_clean(fields[28], _WIDTH["postcode"]),
        city=_clean(city, 200),
    )


def is_header(line: str) -> bool:
    return line.startswith(COLUMNS[0] + SEPARATOR) or line.startswith("\ufeff" + COLUMNS[0])


def read_entries(lines: Iterable[str], tally: Tally) -> Iterator[Entry]:
    """The usable entries, first occurrence of each address; the rest is counted in `tally`."""
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if number == 1 and is_header(line):
            continue
        if not line.strip():
            continue
        tally.lines += 1
        parsed = parse_line(line)
        if isinstance(parsed, str):
            tally.reject(number, parsed)
            continue
        if parsed.address in seen:
            tally.duplicates += 1
            continue
        seen.add(parsed.address)
        tally.entries += 1
        yield parsed
