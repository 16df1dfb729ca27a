"""IHE XDM packages (IHE_XDM.ZIP), as MSSanté carries CDA documents (IHE ITI TF-1 §16).

An archive is checked before anything is read from it: a bounded number of members, a
bounded total size and compression ratio (zip bombs), and no member path that climbs out
of the archive. Each `IHE_XDM/SUBSETnn/METADATA.XML` (ebRIM 3.0 SubmitObjectsRequest) is
read with defusedxml, and its XDS DocumentEntries become the documents the app lists and
opens one by one.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

MAX_MEMBERS = 500
MAX_MEMBER_BYTES = 50 * 1024 * 1024
MAX_TOTAL_BYTES = 100 * 1024 * 1024
MAX_RATIO = 100  # uncompressed / compressed, per member and overall
MAX_METADATA_BYTES = 5 * 1024 * 1024
CHUNK = 64 * 1024

# IHE ITI TF-3 §4.2.5: UUIDs of the XDS attributes read below.
DOCUMENT_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DOCUMENT_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"

_METADATA = re.compile(r"^IHE_XDM/[^/]+/METADATA\.XML$", re.IGNORECASE)
# RFC 6838 §4.2 type/subtype: the document's mimeType becomes a Content-Type header.
_MEDIA_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}$"
)
DEFAULT_CONTENT_TYPE = "application/octet-stream"


class ArchiveRejected(Exception):
    """The archive is unsafe to open (bomb, path traversal) or is not a zip at all."""


@dataclass(frozen=True)
class Patient:
    ins: str | None
    name: str | None
    birth_date: str | None


@dataclass(frozen=True)
class XdmDocument:
    """One XDS DocumentEntry and the archive member that holds it."""

    index: int
    title: str | None
    code: str | None
    code_display: str | None
    class_code: str | None
    content_type: str
    path: str
    patient: Patient | None = None


@dataclass
class XdmPackage:
    documents: list[XdmDocument] = field(default_factory=list)


def _safe_member_name(name: str) -> bool:
    """Relative, forward-slash, no `..`: a member cannot be written or read outside."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name:
        return False
    if re.match(r"^[A-Za-z]:", name):
        return False
    return ".." not in name.split("/")


def open_archive(fileobj: IO[bytes]) -> zipfile.ZipFile:
    """Open and vet a zip before any member is decompressed."""
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveRejected("not a readable zip archive") from exc
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise ArchiveRejected("too many members")
    total = compressed = 0
    for info in members:
        if not _safe_member_name(info.filename):
            raise ArchiveRejected("a member path leaves the archive")
        if info.file_size > MAX_MEMBER_BYTES:
            raise ArchiveRejected("a member is too large")
        if info.file_size > MAX_RATIO * max(info.compress_size, 1024):
            raise ArchiveRejected("a member is compressed beyond any plausible ratio")
        total += info.file_size
        compressed += info.compress_size
    if total > MAX_TOTAL_BYTES or total > MAX_RATIO * max(compressed, 1024):
        raise ArchiveRejected("the archive expands too much")
    return archive


def iter_member(archive: zipfile.ZipFile, name: str) -> Iterator[bytes]:
    """A member's bytes in chunks, never more than its vetted declared size."""
    info = archive.getinfo(name)
    produced = 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(CHUNK):
                produced += len(chunk)
                if produced > info.file_size:
                    raise ArchiveRejected("a member is larger than it declares")
                yield chunk
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise ArchiveRejected("a member cannot be decompressed") from exc


def _read_member(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    if archive.getinfo(name).file_size > limit:
        raise ArchiveRejected("metadata too large")
    return b"".join(iter_member(archive, name))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: Element, name: str) -> Iterator[Element]:
    return (child for child in element if _local(child.tag) == name)


def _name_of(element: Element) -> str | None:
    for name in _children(element, "Name"):
        for localized in _children(name, "LocalizedString"):
            if localized.get("value"):
                return localized.get("value")
    return None


def _slot(element: Element, slot_name: str) -> list[str]:
    for slot in _children(element, "Slot"):
        if slot.get("name") == slot_name:
            return [
                (value.text or "").strip()
                for values in _children(slot, "ValueList")
                for value in _children(values, "Value")
            ]
    return []


def _classification(element: Element, scheme: str) -> tuple[str | None, str | None]:
    for item in _children(element, "Classification"):
        if item.get("classificationScheme") == scheme:
            return item.get("nodeRepresentation"), _name_of(item)
    return None, None


# ANS: the INS assigning authorities (NIR 1.2.250.1.213.1.4.8, NIA .9, test ones .10/.11).
INS_OID_PREFIX = "1.2.250.1.213.1.4."


def _ins_from_cx(cx: str) -> str | None:
    """HL7 CX `id^^^&oid&ISO^type`: the id, if its assigning authority is an INS one.

    A local identifier (the hospital's IPP) is not an INS and must not be shown as one.
    """
    fields = cx.split("^")
    ident = fields[0].strip()
    authority = fields[3].split("&") if len(fields) > 3 else []
    oid = authority[1].strip() if len(authority) > 1 else ""
    return ident if ident and oid.startswith(INS_OID_PREFIX) else None


def _hl7_date(value: str) -> str | None:
    digits = value.strip()[:8]
    if len(digits) == 8 and digits.isdigit():
        return f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"
    return None


def _patient(entry: Element) -> Patient | None:
    """INS and identity traits from sourcePatientInfo (PID-3/5/7), else the patientId."""
    fields: dict[str, list[str]] = {}
    for value in _slot(entry, "sourcePatientInfo"):
        key, _, rest = value.partition("|")
        fields.setdefault(key.strip().upper(), []).append(rest)
    candidates = [*fields.get("PID-3", [])]
    for ext in _children(entry, "ExternalIdentifier"):
        if ext.get("identificationScheme") == DOCUMENT_PATIENT_ID and ext.get("value"):
            candidates.append(ext.get("value", ""))
    ins = next((i for i in map(_ins_from_cx, candidates) if i), None)
    name = None
    if "PID-5" in fields:
        parts = fields["PID-5"][0].split("^")
        family, given = parts[0].strip(), (parts[1].strip() if len(parts) > 1 else "")
        name = " ".join(p for p in (given, family) if p) or None
    birth = _hl7_date(fields["PID-7"][0]) if "PID-7" in fields else None
    if ins is None and name is None and birth is None:
        return None
    return Patient(ins=ins, name=name, birth_date=birth)


def _media_type(declared: str | None) -> str:
    """The declared mimeType if it is one (no parameters, no line break), else bytes."""
    value = (declared or "").strip()
    return value.lower() if _MEDIA_TYPE.match(value) else DEFAULT_CONTENT_TYPE


def _documents_in(
    archive: zipfile.ZipFile, metadata_path: str, start: int, names: set[str]
) -> list[XdmDocument]:
    try:
        root = SafeET.fromstring(
            _read_member(archive, metadata_path, MAX_METADATA_BYTES),
            forbid_dtd=True,
            forbid_entities=True,
            forbid_external=True,
        )
    except (SafeET.ParseError, DefusedXmlException) as exc:
        raise ArchiveRejected("METADATA.XML is not well-formed, safe XML") from exc
    subset = posixpath.dirname(metadata_path)
    documents = []
    for entry in root.iter():
        if _local(entry.tag) != "ExtrinsicObject":
            continue
        if entry.get("objectType") not in (None, DOCUMENT_ENTRY):
            continue
        uris = _slot(entry, "URI")
        if not uris:
            continue
        uri = uris[0]
        path = posixpath.normpath(posixpath.join(subset, uri))
        if not _safe_member_name(uri) or path not in names:
            continue  # an entry naming nothing in the archive (or outside it) is not listed
        code, display = _classification(entry, TYPE_CODE)
        class_code, _ = _classification(entry, CLASS_CODE)
        documents.append(
            XdmDocument(
                index=start + len(documents),
                title=_name_of(entry),
                code=code,
                code_display=display,
                class_code=class_code,
                content_type=_media_type(entry.get("mimeType")),
                path=path,
                patient=_patient(entry),
            )
        )
    return documents


def read_package(archive: zipfile.ZipFile) -> XdmPackage:
    """The documents of every submission set, numbered from 1 in archive order."""
    names = {info.filename for info in archive.infolist()}
    package = XdmPackage()
    for metadata_path in sorted(n for n in names if _METADATA.match(n)):
        package.documents += _documents_in(
            archive, metadata_path, len(package.documents) + 1, names
        )
    return package


def looks_like_xdm(filename: str | None, content_type: str) -> bool:
    """MSSanté names the attachment IHE_XDM.ZIP; some senders only get the type right."""
    if filename and filename.strip().upper().endswith("IHE_XDM.ZIP"):
        return True
    return content_type in {"application/zip", "application/x-zip-compressed"} and bool(
        filename and "XDM" in filename.upper()
    )


def describe(archive_file: IO[bytes]) -> tuple[XdmPackage | None, str | None]:
    """(package, None), or (None, reason) when the archive is refused."""
    try:
        with open_archive(archive_file) as archive:
            return read_package(archive), None
    except ArchiveRejected as exc:
        return None, str(exc)


def patient_dict(patient: Patient | None) -> dict[str, Any] | None:
    if patient is None:
        return None
    return {"ins": patient.ins, "name": patient.name, "birth_date": patient.birth_date}
