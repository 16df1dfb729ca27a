"""One hostile message never makes a mailbox deaf (issue 21.6), and a first import that
is interrupted never announces old mail (21.5). Real Dovecot, both databases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

import backend.sync.catch_up as catch_up_module
from backend.mail.endpoints import imap_endpoint_for
from backend.mail.imap import connect
from backend.storage.models import Mailbox, Message, OutboxEvent
from backend.sync.catch_up import catch_up
from devtools import corpus
from tests.factories import create_dovecot_mailbox
from tests.support import wait_until
from tests.sync.support import RunningWorker, mail, outbox_count, subjects, sync_state


@pytest.fixture
def hostile_services(make_app, dovecot) -> Iterator[Any]:
    app = make_app(ESTAFETTE_CA_BUNDLE=str(dovecot.ca_cert_path))
    yield app.extensions["estafette"]


def _messages(services: Any, public_id: str) -> list[Message]:
    with services.sessions() as db:
        return list(
            db.scalars(
                select(Message)
                .join(Mailbox, Mailbox.id == Message.mailbox_id)
                .where(Mailbox.public_id == public_id)
                .order_by(Message.uid)
            )
        )


def _unprocessable(stage: str) -> float:
    value = REGISTRY.get_sample_value(
        "estafette_sync_unprocessable_messages_total", {"stage": stage}
    )
    return value or 0.0


def _announced(services: Any, message: Message) -> bool:
    with services.sessions() as db:
        return (
            db.scalar(
                select(OutboxEvent.id).where(
                    OutboxEvent.message_id == message.id, OutboxEvent.kind == "mail.new"
                )
            )
            is not None
        )


def test_a_hostile_read_receipt_does_not_stop_the_mail_after_it(hostile_services, dovecot):
    services = hostile_services
    address, _password, public_id = create_dovecot_mailbox(services, dovecot)
    with RunningWorker(services):
        wait_until(lambda: sync_state(services, public_id)[0] == "ok", what="first import")
        dovecot.deliver(address, corpus.hostile_read_receipt(address))
        dovecot.deliver(address, mail("après l'accusé", to=address))
        wait_until(
            lambda: "après l'accusé" in subjects(services, public_id),
            what="the ordinary mail after the hostile receipt",
        )
        assert sync_state(services, public_id)[0] == "ok"
    receipt, ordinary = _messages(services, public_id)
    assert receipt.subject == "Lu: compte rendu"  # an unknown original: stays a mail
    assert _announced(services, ordinary) and _announced(services, receipt)


def test_a_utf8_delivery_report_is_attached_with_its_utf8_recipient(hostile_services, dovecot):
    services = hostile_services
    original_id = "<original-utf8@chu-test.mssante.fr>"
    original = mail("original").replace(
        b"\nSubject:", f"\nMessage-ID: {original_id}\nSubject:".encode()
    )
    address, _password, public_id = create_dovecot_mailbox(
        services, dovecot, already_there=[original]
    )
    dovecot.deliver(address, corpus.utf8_delivery_report(address, original_id))
    _sync_once(services, public_id)

    (message,) = _messages(services, public_id)
    assert [(r["type"], r["recipient"]) for r in message.receipts] == [
        ("delivered", "éléa.médecin@hôpital.mssante.fr")
    ]


def test_a_message_a_stage_cannot_process_is_stored_malformed_and_the_next_is_synced(
    hostile_services, dovecot, monkeypatch
):
    """Whatever the bug in a stage, it costs one message its details, never the mailbox."""
    services = hostile_services
    address, _password, public_id = create_dovecot_mailbox(services, dovecot)
    _sync_once(services, public_id)
    dovecot.deliver(address, mail("le patient", to=address))
    dovecot.deliver(address, mail("le suivant", to=address))
    real = catch_up_module.patients.with_patient

    def broken_for_one(client, data, envelope):
        if envelope.subject == "le patient":
            raise KeyError("a bug in the XDM stage")
        return real(client, data, envelope)

    monkeypatch.setattr(catch_up_module.patients, "with_patient", broken_for_one)
    before = _unprocessable("patient")
    _sync_once(services, public_id)

    first, second = _messages(services, public_id)
    assert (first.subject, first.malformed) == ("le patient", True)
    assert (second.subject, second.malformed) == ("le suivant", False)
    assert _announced(services, first) and _announced(services, second)
    assert _unprocessable("patient") == before + 1


def test_an_unparseable_fetch_answer_is_stored_bare_and_malformed(hostile_services, dovecot):
    """Deep nesting and a 10 MB header line: the envelope is built from what could be read."""
    services = hostile_services
    address, _password, public_id = create_dovecot_mailbox(services, dovecot)
    _sync_once(services, public_id)
    for raw in (corpus.deep_nesting(), corpus.single_line_header(), corpus.many_recipients()):
        dovecot.deliver(address, raw)
    dovecot.deliver(address, mail("ordinaire", to=address))
    _sync_once(services, public_id)

    nested, long_line, crowded, ordinary = _messages(services, public_id)
    assert nested.subject == "poupees russes"
    assert long_line.subject == "un en-tete de dix megaoctets"
    assert long_line.malformed  # its header block was cut
    assert len(crowded.recipients["to"]) == 100
    assert (ordinary.subject, ordinary.malformed) == ("ordinaire", False)


def _sync_once(services: Any, public_id: str) -> None:
    with services.sessions() as db:
        mailbox = db.scalar(select(Mailbox).where(Mailbox.public_id == public_id))
        endpoint, mailbox_pk = imap_endpoint_for(mailbox), mailbox.id
    client = connect(endpoint, ca_bundle=services.settings.ca_bundle)
    try:
        catch_up(client, services.sessions, mailbox_id=mailbox_pk)
    finally:
        client.logout()


def test_an_interrupted_first_import_never_announces_old_mail(
    hostile_services, dovecot, monkeypatch
):
    """The connection drops after the first batch; the resumed import stays silent for the
    old mail, and mail that came meanwhile is announced."""
    services = hostile_services
    old = [mail(f"ancien {n}") for n in range(5)]
    address, _password, public_id = create_dovecot_mailbox(services, dovecot, already_there=old)
    monkeypatch.setattr(catch_up_module, "FETCH_BATCH", 2)
    with services.sessions() as db:
        mailbox = db.scalar(select(Mailbox).where(Mailbox.public_id == public_id))
        endpoint, mailbox_pk = imap_endpoint_for(mailbox), mailbox.id
    client = connect(endpoint, ca_bundle=services.settings.ca_bundle)
    real_audit = catch_up_module.stored_receipts.audit_received

    def drop_connection_after_first_batch(audit, attached):
        real_audit(audit, attached)
        client.shutdown()  # the worker is gone; its IMAP connection with it

    monkeypatch.setattr(
        catch_up_module.stored_receipts, "audit_received", drop_connection_after_first_batch
    )
    with pytest.raises((OSError, catch_up_module.ProtocolError)):
        catch_up(client, services.sessions, mailbox_id=mailbox_pk)
    assert len(_messages(services, public_id)) == 2  # the first batch is in

    monkeypatch.setattr(catch_up_module.stored_receipts, "audit_received", real_audit)
    dovecot.deliver(address, mail("nouveau", to=address))
    _sync_once(services, public_id)

    messages = _messages(services, public_id)
    assert [m.subject for m in messages] == [*(f"ancien {n}" for n in range(5)), "nouveau"]
    assert [_announced(services, m) for m in messages] == [False] * 5 + [True]
    assert outbox_count(services, public_id) == 1
