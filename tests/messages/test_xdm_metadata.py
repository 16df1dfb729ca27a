"""Reading XDS metadata from an IHE_XDM.ZIP: documents, codes and the patient's INS."""

from __future__ import annotations

import io
import zipfile

import pytest

from backend.mail import xdm
from devtools import samples


def _package(metadata: str, members: dict[str, bytes] | None = None) -> xdm.XdmPackage:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("IHE_XDM/SUBSET01/METADATA.XML", metadata)
        for name, data in (members or {"IHE_XDM/SUBSET01/DOC1.XML": b"<x/>"}).items():
            archive.writestr(name, data)
    buffer.seek(0)
    package, reason = xdm.describe(buffer)
    assert package is not None, reason
    return package


def _entry(uri: str, patient_info: list[str], mime: str = "text/xml") -> str:
    values = "".join(f"<rim:Value>{v}</rim:Value>" for v in patient_info)
    return f"""<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
 xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"><rim:RegistryObjectList>
<rim:ExtrinsicObject id="d" mimeType="{mime}" objectType="{xdm.DOCUMENT_ENTRY}">
<rim:Slot name="URI"><rim:ValueList><rim:Value>{uri}</rim:Value></rim:ValueList></rim:Slot>
<rim:Slot name="sourcePatientInfo"><rim:ValueList>{values}</rim:ValueList></rim:Slot>
<rim:Name><rim:LocalizedString value="Compte rendu"/></rim:Name>
<rim:Classification classificationScheme="{xdm.TYPE_CODE}" nodeRepresentation="11502-2"
 classifiedObject="d"><rim:Name><rim:LocalizedString value="CR de biologie"/></rim:Name>
</rim:Classification></rim:ExtrinsicObject></rim:RegistryObjectList></lcm:SubmitObjectsRequest>"""


def test_the_sample_package_gives_one_cda_with_its_ins_and_identity_traits() -> None:
    package, reason = xdm.describe(io.BytesIO(samples.xdm_zip_bytes()))

    assert reason is None
    [document] = package.documents
    assert document.path == "IHE_XDM/SUBSET01/DOC0001.XML"
    assert document.code == "11490-0"
    assert document.patient == xdm.Patient(
        ins=samples.DEMO_PATIENT.ins, name="Lucien FICTIF", birth_date="1985-01-15"
    )


def test_a_local_patient_id_is_not_shown_as_an_ins() -> None:
    package = _package(
        _entry(
            "DOC1.XML",
            [
                "PID-3|IPP0042^^^&amp;1.2.250.1.999.1&amp;ISO^PI",
                "PID-5|DUPONT^Marie^^^^^L",
                "PID-7|19700101",
            ],
        )
    )

    [document] = package.documents
    assert document.patient == xdm.Patient(ins=None, name="Marie DUPONT", birth_date="1970-01-01")
    assert (document.title, document.code, document.code_display) == (
        "Compte rendu",
        "11502-2",
        "CR de biologie",
    )


def test_the_ins_is_found_among_several_patient_identifiers() -> None:
    package = _package(
        _entry(
            "DOC1.XML",
            [
                "PID-3|IPP0042^^^&amp;1.2.250.1.999.1&amp;ISO^PI",
                "PID-3|285017512345678^^^&amp;1.2.250.1.213.1.4.8&amp;ISO^INS",
            ],
        )
    )

    assert package.documents[0].patient.ins == "285017512345678"


def test_an_entry_whose_uri_names_nothing_in_the_archive_is_not_listed() -> None:
    package = _package(_entry("MISSING.XML", []))

    assert package.documents == []


@pytest.mark.parametrize(
    "name",
    ["../evil.sh", "/etc/passwd", "IHE_XDM/../../x", "C:/Windows/x", "IHE_XDM\\..\\x", "a/../../b"],
)
def test_a_member_path_that_leaves_the_archive_refuses_the_whole_archive(name: str) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("IHE_XDM/SUBSET01/METADATA.XML", "<x/>")
        archive.writestr(zipfile.ZipInfo(name), b"payload")
    buffer.seek(0)

    with pytest.raises(xdm.ArchiveRejected, match="leaves the archive"):
        xdm.open_archive(buffer)


def test_bytes_that_are_not_a_zip_are_refused_not_crashed_on() -> None:
    package, reason = xdm.describe(io.BytesIO(b"PK\x03\x04 not really a zip"))

    assert package is None
    assert reason == "not a readable zip archive"
