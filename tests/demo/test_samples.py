"""The sample messages are what demos and tests feed the gateway: they must be the MIME
they claim to be (and `malformed()` exactly as broken as it claims)."""

from __future__ import annotations

import email
import email.policy
import hashlib
import io
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from email.errors import CloseBoundaryNotFoundDefect
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from devtools import samples

pytestmark = pytest.mark.unit

RIM = "{urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0}"
CDA = "{urn:hl7-org:v3}"

WELL_FORMED: list[Callable[..., bytes]] = [
    samples.plain_letter,
    samples.html_alternative,
    samples.xdm_discharge_letter,
    samples.mdn_requested,
    samples.urgent,
    lambda **kw: samples.canary_message("CANARY-7c1e", **kw),
]


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


@pytest.mark.parametrize("build", WELL_FORMED)
def test_well_formed_samples_parse_cleanly(build: Callable[..., bytes]) -> None:
    raw = build()
    # Transport-safe: CRLF line ends and 7-bit, so no server needs 8BITMIME.
    assert raw.isascii()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = parse(raw)
    for part in msg.walk():
        assert part.defects == []
    assert msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith(">")
    assert msg["Date"].datetime.tzinfo is not None
    assert msg["X-MSS-NIL"] == samples.NIL
    assert msg["From"].addresses[0].domain.endswith(".mssante.fr")
    assert msg["To"].addresses[0].addr_spec == samples.DEMO_MAILBOX
    assert msg.get_body(preferencelist=("plain",)).get_content().strip()


@pytest.mark.parametrize("build", WELL_FORMED)
def test_addresses_can_be_chosen(build: Callable[..., bytes]) -> None:
    msg = parse(
        build(to="dr.test@ch-test.mssante.fr", sender="secretariat@clinique-test.mssante.fr")
    )
    assert msg["To"].addresses[0].addr_spec == "dr.test@ch-test.mssante.fr"
    assert msg["From"].addresses[0].addr_spec == "secretariat@clinique-test.mssante.fr"
    assert msg["Message-ID"].endswith("@clinique-test.mssante.fr>")


def test_plain_letter_is_utf8_text() -> None:
    msg = parse(samples.plain_letter())
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert "é" in msg.get_content() and "consœur" in msg.get_content()
    assert "–" in str(msg["Subject"])
    assert msg["From"].addresses[0].display_name == "Dr Antoine LEFÈVRE"


def test_html_alternative_carries_what_a_sanitiser_must_remove() -> None:
    msg = parse(samples.html_alternative())
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert '<img src="https://tracker.example/pixel.gif"' in html
    assert "<script>" in html
    assert "onload=" in html


def test_xdm_message_headers_and_attachment() -> None:
    msg = parse(samples.xdm_discharge_letter())
    assert str(msg["Subject"]).startswith("XDM/1.0/DDM+")
    assert msg["X-MSS-CODECDA"] == "11490-0"
    assert msg["X-MSS-INS"] == "O"
    (attachment,) = msg.iter_attachments()
    assert attachment.get_filename() == "IHE_XDM.ZIP"
    assert attachment.get_content_type() == "application/zip"
    assert attachment.get_content() == samples.xdm_zip_bytes()


def test_xdm_zip_is_stable() -> None:
    assert samples.xdm_zip_bytes() == samples.xdm_zip_bytes()


def test_xdm_metadata_points_at_a_cda_in_the_zip() -> None:
    archive = zipfile.ZipFile(io.BytesIO(samples.xdm_zip_bytes()))
    names = set(archive.namelist())
    assert {"INDEX.HTM", "README.TXT", "IHE_XDM/SUBSET01/METADATA.XML"} <= names

    # Our own generated XML, not untrusted input.
    metadata = ET.fromstring(archive.read("IHE_XDM/SUBSET01/METADATA.XML"))  # noqa: S314
    (entry,) = metadata.iter(f"{RIM}ExtrinsicObject")
    assert entry.get("mimeType") == "text/xml"
    slots = {
        slot.get("name"): [v.text for v in slot.iter(f"{RIM}Value")]
        for slot in entry.findall(f"{RIM}Slot")
    }
    (uri,) = slots["URI"]
    path = f"IHE_XDM/SUBSET01/{uri}"
    assert path in names

    patient = samples.DEMO_PATIENT
    info = slots["sourcePatientInfo"]
    assert f"PID-3|{patient.ins}^^^&1.2.250.1.213.1.4.8&ISO^INS" in info
    assert f"PID-5|{patient.family}^{patient.given}^^^^^L" in info
    assert f"PID-7|{patient.birth_date}" in info

    title = entry.find(f"{RIM}Name/{RIM}LocalizedString").get("value")
    assert title
    type_code = [
        c
        for c in entry.findall(f"{RIM}Classification")
        if c.get("classificationScheme") == "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
    ]
    assert [c.get("nodeRepresentation") for c in type_code] == ["11490-0"]
    assert "Lettre de liaison" in type_code[0].find(f"{RIM}Name/{RIM}LocalizedString").get("value")

    document = archive.read(path)
    assert slots["hash"] == [hashlib.sha1(document, usedforsecurity=False).hexdigest()]
    assert slots["size"] == [str(len(document))]
    cda = ET.fromstring(document)  # noqa: S314
    assert cda.tag == f"{CDA}ClinicalDocument"
    assert cda.find(f"{CDA}code").get("code") == "11490-0"
    assert cda.find(f"{CDA}title").text
    ins = cda.find(f"{CDA}recordTarget/{CDA}patientRole/{CDA}id")
    assert (ins.get("root"), ins.get("extension")) == (samples.INS_OID, patient.ins)

    # The package's RegistryPackage (submission set) holds the entry.
    (association,) = metadata.iter(f"{RIM}Association")
    assert association.get("targetObject") == entry.get("id")


def test_fictitious_ins_is_well_formed() -> None:
    ins = samples.DEMO_PATIENT.ins
    assert len(ins) == 15 and ins.isdigit()
    assert int(ins[13:]) == 97 - int(ins[:13]) % 97


def test_mdn_requested() -> None:
    msg = parse(samples.mdn_requested(sender="imagerie@ch-test.mssante.fr"))
    assert msg["Disposition-Notification-To"] == "imagerie@ch-test.mssante.fr"


def test_urgent() -> None:
    msg = parse(samples.urgent())
    assert msg["Importance"] == "high"
    assert msg["X-Priority"] == "1"


def test_malformed_still_parses_and_shows_its_defects() -> None:
    raw = samples.malformed()
    header = raw.split(b"\r\n\r\n", 1)[0]
    assert not header.isascii()  # raw 8-bit bytes in a header line

    msg = BytesParser(policy=email.policy.default).parsebytes(raw)
    defects = [d for part in msg.walk() for d in part.defects]
    assert any(isinstance(d, CloseBoundaryNotFoundDefect) for d in defects)
    assert msg.is_multipart()
    text, attachment = list(msg.iter_parts())
    assert text.get_content_charset() == "x-unknown-8bit"
    assert attachment.get_filename() == "CRO.pdf"
    assert str(msg["Subject"]).startswith("Compte rendu op")
    assert msg["From"].addresses[0].addr_spec == "secretariat.chirurgie@ch-exemple.mssante.fr"
    assert msg["X-MSS-NIL"] == samples.NIL


def test_canary_reaches_every_place_a_leak_could_come_from() -> None:
    canary = "CANARY-d41d8cd9"
    msg = parse(samples.canary_message(canary))
    assert canary in str(msg["Subject"])
    assert canary in msg["From"].addresses[0].display_name
    assert canary in msg.get_body(preferencelist=("plain",)).get_content()
    (attachment,) = msg.iter_attachments()
    assert canary in attachment.get_filename()
    assert canary.encode() in attachment.get_content()
    assert attachment.get_content().startswith(b"%PDF-")


def test_demo_mailbox_contents() -> None:
    now = datetime(2026, 1, 20, 9, 0, tzinfo=UTC)
    raws = samples.demo_mailbox_contents(to="dr.demo@chu-exemple.mssante.fr", now=now)
    assert len(raws) >= 6
    messages = [BytesParser(policy=email.policy.default).parsebytes(r) for r in raws]
    assert all(m["To"].addresses[0].addr_spec == "dr.demo@chu-exemple.mssante.fr" for m in messages)
    assert len({m["Message-ID"] for m in messages}) == len(messages)
    dates = [m["Date"].datetime for m in messages]
    assert dates == sorted(dates) and dates[-1] <= now
    subjects = [str(m["Subject"]) for m in messages]
    assert any(s.startswith("XDM/1.0/DDM+") for s in subjects)
