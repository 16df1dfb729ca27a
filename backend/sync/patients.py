"""The patient of a message, read from the METADATA.XML of its IHE_XDM.ZIP at sync time.

MSSanté carries the patient's identity (INS and traits) in the XDM submission set, not
in a header: `X-MSS-INS` only says that an INS is present. Reading it while syncing lets
the list and /sync show whom a message is about without opening it. Only the archive's
part is fetched, and only for messages whose structure names one.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import logging
import quopri
from typing import Any

from backend.mail import xdm
from backend.mail.envelope import Envelope
from backend.mail.imap import MailSession
from backend.mail.structure import LeafPart, leaf_parts

log = logging.getLogger("estafette.sync")

# Larger archives are still readable on demand; the sync does not download them.
XDM_FETCH_LIMIT = 10 * 1024 * 1024


def with_patient(client: MailSession, data: dict[bytes, Any], envelope: Envelope) -> Envelope:
    """The envelope with `patient` filled from its XDM metadata, if its structure names one."""
    part = _xdm_part(data.get(b"BODYSTRUCTURE"))
    patient = _read_patient(client, envelope.uid, part) if part is not None else None
    return dataclasses.replace(envelope, patient=patient) if patient else envelope


def _xdm_part(bodystructure: Any) -> LeafPart | None:
    for part in leaf_parts(bodystructure):
        if xdm.looks_like_xdm(part.filename, part.content_type) and part.size <= XDM_FETCH_LIMIT:
            return part
    return None


def _read_patient(client: MailSession, uid: int, part: LeafPart) -> dict[str, Any] | None:
    key = f"BODY[{part.section}]".encode()
    raw = client.fetch([uid], [f"BODY.PEEK[{part.section}]"]).get(uid, {}).get(key) or b""
    try:
        archive = _decode(bytes(raw), part.encoding)
    except (binascii.Error, ValueError):
        log.warning("undecodable XDM archive (uid %s)", uid)
        return None
    package, refused = xdm.describe(io.BytesIO(archive))
    if package is None:
        log.warning("XDM archive refused (uid %s): %s", uid, refused)
        return None
    return xdm.patient_dict(next((d.patient for d in package.documents if d.patient), None))


def _decode(raw: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        return base64.b64decode(raw)
    if encoding == "quoted-printable":
        return quopri.decodestring(raw)
    return raw
