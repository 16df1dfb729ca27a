"""Generate an ANS MSSanté extraction file in its real column layout, for tests, the demo
and the bench (backend/directory/extraction.py cites the layout).

Deterministic for a seed. `tricky=True` adds the rows real files make us handle: accents,
ligatures, apostrophes, hyphenated names, an address on two lines, a line cut short, an
unknown mailbox type, a trailing separator.

    python -m devtools.directory_extraction OUT.txt --entries 600000
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from pathlib import Path

from backend.directory.extraction import COLUMNS, SEPARATOR

LAST_NAMES = [
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefebvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "Andre",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "Francois",
    "Martinez",
    "Legrand",
    "Garnier",
    "Faure",
    "Rousseau",
    "Blanc",
    "Guerin",
    "Muller",
    "Henry",
    "Roussel",
    "Nicolas",
    "Perrin",
    "Morin",
    "Mathieu",
    "Clement",
    "Gauthier",
    "Dumont",
    "Lopez",
    "Fontaine",
    "Chevalier",
    "Robin",
    "Masson",
    "Sanchez",
    "Gerard",
    "Nguyen",
    "Boyer",
    "Denis",
    "Lemaire",
    "Duval",
    "Joly",
    "Gautier",
]
FIRST_NAMES = [
    "Jean",
    "Marie",
    "Pierre",
    "Michel",
    "Anne",
    "Philippe",
    "Nathalie",
    "Isabelle",
    "Alain",
    "Catherine",
    "Sylvie",
    "Nicolas",
    "Christophe",
    "Sophie",
    "Julien",
    "Camille",
    "Lucas",
    "Emma",
    "Louise",
    "Hugo",
    "Chloe",
    "Thomas",
    "Claire",
    "Antoine",
    "Julie",
    "Paul",
    "Sarah",
    "Marc",
    "Laura",
    "Eric",
    "Celine",
    "Olivier",
    "Manon",
    "Louis",
    "Ines",
    "Arthur",
]
PROFESSIONS = (
    ("10", "Médecin", "SM54", "Médecine générale"),
    ("10", "Médecin", "SM26", "Qualifié en Médecine Générale"),
    ("10", "Médecin", "SM04", "Cardiologie et maladies vasculaires"),
    ("10", "Médecin", "SM40", "Pédiatrie"),
    ("10", "Médecin", "SM15", "Gynécologie-obstétrique"),
    ("10", "Médecin", "SM42", "Psychiatrie"),
    ("21", "Pharmacien", "", ""),
    ("40", "Chirurgien-Dentiste", "", ""),
    ("50", "Sage-Femme", "", ""),
    ("60", "Infirmier", "", ""),
    ("70", "Masseur-Kinésithérapeute", "", ""),
)
CITIES = (
    ("75015", "PARIS"),
    ("69003", "LYON"),
    ("13005", "MARSEILLE"),
    ("31059", "TOULOUSE"),
    ("33000", "BORDEAUX"),
    ("59000", "LILLE"),
    ("44093", "NANTES"),
    ("67091", "STRASBOURG"),
    ("35033", "RENNES"),
    ("97400", "SAINT-DENIS"),
    ("21000", "DIJON"),
    ("14000", "CAEN"),
)
STREETS = ("Rue de la Paix", "Avenue Jean Jaurès", "Boulevard Pasteur", "Place de l'Hôpital")
ORG_SERVICES = ("Secrétariat", "Urgences", "Cardiologie", "Radiologie", "Laboratoire", "Pédiatrie")

# (kind, last, first, profession index, organisation, city index, local part, domain)
TRICKY = (
    ("PER", "Lefèvre", "Hélène", 3, "CHU de Test", 0, "helene.lefevre", "chu-test.mssante.fr"),
    ("PER", "O'Brien", "Seán", 0, "Cabinet O'Brien", 1, "sean.obrien", "medecin.mssante.fr"),
    (
        "PER",
        "Müller-Lefèvre",
        "Jean-Pierre",
        2,
        "CH Côte d'Émeraude",
        2,
        "jp.muller-lefevre",
        "ch-emeraude.mssante.fr",
    ),
    ("PER", "d'Alembert", "Zoé", 4, "Clinique Saint-Éloi", 3, "zoe.dalembert", "pro.mssante.fr"),
    ("PER", "Lœwenbruck", "Cœur", 5, "CHU de Test", 0, "coeur.loewenbruck", "chu-test.mssante.fr"),
    ("ORG", "", "", 0, "Hôpital Saint-Éloi", 4, "secretariat.cardio", "chu-test.mssante.fr"),
)


def _fields(**values: str) -> list[str]:
    row = [""] * len(COLUMNS)
    for name, value in values.items():
        row[COLUMNS.index(name)] = value
    return row


def _line(
    kind: str,
    address: str,
    last: str,
    first: str,
    job: int,
    org: str,
    city: int,
    service: str = "",
    national_id: str = "",
) -> str:
    code, profession, sf_code, specialty = PROFESSIONS[job]
    postcode, town = CITIES[city]
    row = _fields(
        **{
            "Type de BAL": kind,
            "Adresse BAL": address,
            "Type Identifiant PP": "8" if national_id else "",
            "Identifiant PP": national_id[1:] if national_id else "",
            "Identification nationale PP": national_id,
            "Type identifiant structure": "1" if org else "",
            "Identification Structure": "1750000000" if org else "",
            "Service de rattachement": service,
            "Civilité d'exercice": "DR" if kind == "PER" and code == "10" else "",
            "Nom d'exercice": last,
            "Prénom d'exercice": first,
            "Code Profession": code if kind == "PER" else "",
            "Libellé Profession": profession if kind == "PER" else "",
            "Code savoir-faire": sf_code if kind == "PER" else "",
            "Libellé savoir-faire": specialty if kind == "PER" else "",
            "Raison Sociale structure BAL": org,
            "L4NUMEROVOIE": str(1 + city),
            "L4LIBELLEVOIE": STREETS[city % len(STREETS)],
            "L6LIGNEACHEMINEMENT": f"{postcode} {town}",
            "Code postal": postcode,
            "Département": postcode[:2],
            "Pays": "FRANCE",
        }
    )
    return SEPARATOR.join(row)


def tricky_lines() -> list[str]:
    """The hand-picked rows, then the malformed ones (3 of them) and one duplicate."""
    lines = [
        _line(
            kind,
            f"{local}@{domain}",
            last,
            first,
            job,
            org,
            city,
            service="Cardiologie" if kind == "ORG" else "",
            national_id="" if kind == "ORG" else f"8100{index:07d}",
        )
        for index, (kind, last, first, job, org, city, local, domain) in enumerate(TRICKY)
    ]
    lines.append(lines[0])  # the same address twice: one entry
    lines.append(lines[1] + SEPARATOR)  # trailing separator: a duplicate, not malformed
    lines.append(SEPARATOR.join(lines[2].split(SEPARATOR)[:12]))  # cut short
    lines.append("XYZ" + lines[3][3:].replace("zoe.dalembert", "zoe.other"))  # unknown type
    lines.append(lines[4].replace("coeur.loewenbruck@", "not an address@"))  # bad address
    return lines


TRICKY_ENTRIES = len(TRICKY)
TRICKY_MALFORMED = 3
TRICKY_DUPLICATES = 2


def generated_lines(entries: int, seed: int = 18) -> Iterator[str]:
    """`entries` distinct plausible mailboxes (80 % PER, 20 % ORG)."""
    rng = random.Random(seed)
    for number in range(entries):
        city = rng.randrange(len(CITIES))
        domain = f"ch-{CITIES[city][1].lower()}-{number % 97}.mssante.fr"
        if rng.random() < 0.8:
            last, first = rng.choice(LAST_NAMES), rng.choice(FIRST_NAMES)
            job = rng.randrange(len(PROFESSIONS))
            yield _line(
                "PER",
                f"{first}.{last}.{number}@{domain}".lower(),
                last.upper(),
                first,
                job,
                f"CH de {CITIES[city][1].title()}",
                city,
                national_id=f"1{number:010d}",
            )
        else:
            service = rng.choice(ORG_SERVICES)
            yield _line(
                "ORG",
                f"{service}.{number}@{domain}".lower().replace("é", "e"),
                "",
                "",
                0,
                f"Centre hospitalier de {CITIES[city][1].title()}",
                city,
                service=service,
            )


def write_extraction(path: Path, entries: int, *, tricky: bool = True, seed: int = 18) -> Path:
    """The file as the ANS publishes it: header line, `|`-separated UTF-8, CRLF-free."""
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write(SEPARATOR.join(COLUMNS) + "\n")
        if tricky:
            for line in tricky_lines():
                out.write(line + "\n")
        for line in generated_lines(entries, seed):
            out.write(line + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--no-tricky", action="store_true")
    args = parser.parse_args()
    write_extraction(args.out, args.entries, tricky=not args.no_tricky)
    print(args.out)


if __name__ == "__main__":
    main()
