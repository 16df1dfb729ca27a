"""The trust space: ANS's XML whitelist of MSSanté domains, refreshed without a restart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend.outgoing.trust_space import (
    TrustSpaceUnreadable,
    load_trust_space,
    parse_whitelist,
)
from tests.sending.support import Doctor
from tests.support import body

ANS_LIST = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListeDomaines xmlns="http://www.esante.gouv.fr/mssante/domaines">
  <Domaine>
    <Nom>chu-test.mssante.fr</Nom>
    <Operateur>CHU de Test</Operateur>
  </Domaine>
  <Domaine><Nom>Labo-Exemple.fr</Nom></Domaine>
</ListeDomaines>
"""


def test_the_ans_whitelist_names_the_allowed_domains_exactly() -> None:
    space = parse_whitelist(ANS_LIST)

    assert space.allows("dr.house@chu-test.mssante.fr")
    assert space.allows("Bio <bio@labo-exemple.fr>")
    assert not space.allows("dr@autre.mssante.fr")
    assert not space.allows("dr@sub.chu-test.mssante.fr")
    assert not space.allows("not-an-address")


def test_without_a_whitelist_the_trust_space_is_mssante_fr() -> None:
    space = load_trust_space(None)

    assert space.allows("dr@chu-x.mssante.fr")
    assert space.allows("patient@patient.mssante.fr")
    assert not space.allows("dr@gmail.com")
    assert not space.allows("dr@mssante.fr.example.com")


@pytest.mark.parametrize(
    "document",
    [
        b"<ListeDomaines><Domaine><Nom>a.fr</Nom></Domaine>",  # truncated
        b"<ListeDomaines/>",  # no domain at all
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><Domaine><Nom>&e;</Nom></Domaine>',
    ],
)
def test_a_broken_or_hostile_whitelist_is_refused(document: bytes) -> None:
    with pytest.raises(TrustSpaceUnreadable):
        parse_whitelist(document)


@pytest.fixture
def whitelist(tmp_path: Path) -> Path:
    path = tmp_path / "domaines.xml"
    path.write_bytes(ANS_LIST)
    return path


@pytest.fixture
def listed_app(make_app, dovecot, whitelist):
    return make_app(
        ESTAFETTE_CA_BUNDLE=str(dovecot.ca_cert_path), ESTAFETTE_TRUST_SPACE=str(whitelist)
    )


def test_sending_follows_the_whitelist_file_and_its_refreshes(
    listed_app, dovecot, whitelist
) -> None:
    http, services = listed_app.test_client(), listed_app.extensions["estafette"]
    doctor = Doctor.create(http, services, dovecot)
    before = len(dovecot.relayed)

    refused = doctor.send(to=["dr@autre-chu.mssante.fr"])
    assert refused.status_code == 422
    assert body(refused)["code"] == "recipient_outside_trust_space"
    assert len(dovecot.relayed) == before

    whitelist.write_bytes(ANS_LIST.replace(b"Labo-Exemple.fr", b"autre-chu.mssante.fr"))
    stat = whitelist.stat()
    os.utime(whitelist, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert doctor.send(to=["dr@autre-chu.mssante.fr"]).status_code == 202


def test_an_unreadable_whitelist_refuses_every_send(listed_app, dovecot, whitelist) -> None:
    http, services = listed_app.test_client(), listed_app.extensions["estafette"]
    doctor = Doctor.create(http, services, dovecot)
    whitelist.write_bytes(b"<not-xml")
    before = len(dovecot.relayed)

    response = doctor.send(to=[doctor.address])

    assert response.status_code == 503
    assert body(response)["code"] == "mailbox_unavailable"
    assert len(dovecot.relayed) == before
