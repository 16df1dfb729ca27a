"""The sync worker against real Dovecot: new mail through IDLE, resumable state, failures."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy import select, update

from backend.storage.database import session_scope
from backend.storage.models import Folder, Mailbox, Message
from backend.sync.worker import SyncWorker
from devtools import samples
from devtools.dovecot import DovecotServer
from tests.factories import create_dovecot_mailbox
from tests.services.silent_relay import SilentRelay
from tests.support import wait_until
from tests.sync.support import (
    RunningWorker,
    desktop_client,
    mail,
    outbox_count,
    subjects,
    sync_state,
    wait_for_recovery,
)


@pytest.fixture
def sync_app(make_app, dovecot):
    """An app whose settings trust the test Dovecot's CA, with short leases."""
    app = make_app(ESTAFETTE_CA_BUNDLE=str(dovecot.ca_cert_path), ESTAFETTE_SYNC_LEASE_SECONDS="6")
    yield app
    app.extensions["estafette"].engine.dispose()


@pytest.fixture
def services_(sync_app):
    return sync_app.extensions["estafette"]


@pytest.fixture(params=["qresync", "condstore", "qresync-refused"])
def tracking(request, monkeypatch) -> str:
    """Dovecot offers QRESYNC; "condstore" plays a server that offers only CONDSTORE, and
    "qresync-refused" one that offers QRESYNC but answers BAD to CHANGEDSINCE ... VANISHED."""
    import backend.sync.catch_up as catch_up_module
    import backend.sync.worker as worker_module

    if request.param == "qresync-refused":

        def refused(*_args: object) -> None:
            raise IMAPClientError("UID FETCH command error: BAD [b'Invalid arguments']")

        monkeypatch.setattr(catch_up_module, "fetch_changes_since", refused)
    if request.param == "condstore":

        def condstore_only(client: IMAPClient) -> tuple[bool, bool]:
            client.enable("CONDSTORE")
            return True, False

        monkeypatch.setattr(worker_module, "enable_change_tracking", condstore_only)
    return request.param


@pytest.fixture
def worker(services_) -> Iterator[SyncWorker]:
    with RunningWorker(services_) as running:
        yield running


def test_existing_mail_is_imported_silently_and_new_mail_is_announced(
    services_, dovecot, worker
) -> None:
    address, _password, public_id = create_dovecot_mailbox(
        services_, dovecot, already_there=[mail("déjà là")]
    )
    wait_until(lambda: sync_state(services_, public_id)[0] == "ok", what="the mailbox in sync")
    wait_until(lambda: subjects(services_, public_id) == ["déjà là"], what="the import")
    assert outbox_count(services_, public_id) == 0

    dovecot.deliver(address, mail("nouveau"))
    wait_until(lambda: "nouveau" in subjects(services_, public_id), what="IDLE to see it")
    assert outbox_count(services_, public_id) == 1


def test_mail_announced_while_the_worker_is_fetching_is_not_left_until_renewal(
    services_, dovecot, monkeypatch
) -> None:
    """A server tells of new mail (EXISTS) in answer to whatever command is running, and
    only once: the worker must act on it before it goes back to IDLE, not 9 minutes later."""
    import backend.sync.worker as worker_module

    address, _password, public_id = create_dovecot_mailbox(
        services_, dovecot, already_there=[mail("déjà là")]
    )
    real_connect = worker_module.connect
    delivered = threading.Event()

    def connect_then_deliver_after_the_first_search(*args, **kwargs):
        client = real_connect(*args, **kwargs)
        real_search = client.search

        def search(*search_args, **search_kwargs):
            found = real_search(*search_args, **search_kwargs)
            if not delivered.is_set():
                dovecot.deliver(address, mail("pendant la synchronisation"))
                client.noop()  # the answer carries EXISTS and RECENT: IDLE will not repeat them
                delivered.set()
            return found

        client.search = search
        return client

    monkeypatch.setattr(worker_module, "connect", connect_then_deliver_after_the_first_search)
    with RunningWorker(services_):
        wait_until(
            lambda: subjects(services_, public_id) == ["déjà là", "pendant la synchronisation"],
            what="the mail announced during the first sync",
        )
    assert delivered.is_set()
    assert outbox_count(services_, public_id) == 1


def test_mail_that_arrived_while_away_is_fetched_on_reconnect(services_, dovecot) -> None:
    address, _password, public_id = create_dovecot_mailbox(services_, dovecot)
    with RunningWorker(services_):
        wait_until(lambda: sync_state(services_, public_id)[0] == "ok", what="first sync")
    dovecot.deliver(address, mail("pendant l'absence"))
    with RunningWorker(services_):
        wait_until(
            lambda: subjects(services_, public_id) == ["pendant l'absence"],
            what="the catch-up on reconnect",
        )
    assert outbox_count(services_, public_id) == 1


def test_flags_set_in_the_desktop_client_come_back_through_idle(
    services_, dovecot, tracking, worker
) -> None:
    address, password, public_id = create_dovecot_mailbox(services_, dovecot)
    dovecot.deliver(address, mail("à lire"))
    wait_until(lambda: sync_state(services_, public_id)[0] == "ok", what="sync")
    wait_until(lambda: subjects(services_, public_id), what="the import")

    with desktop_client(dovecot, address, password) as desktop:
        desktop.add_flags(desktop.search("ALL"), [b"\\Seen", b"\\Flagged"])

    def flags() -> tuple[bool, bool]:
        with services_.sessions() as db:
            message = db.scalar(select(Message).join(Mailbox).where(Mailbox.public_id == public_id))
            return message.seen, message.flagged

    wait_until(lambda: flags() == (True, True), what="flags to come back")
    assert outbox_count(services_, public_id, kind="mail.read") == 1


def test_an_expunge_in_the_desktop_client_leaves_the_cache(
    services_, dovecot, tracking, worker
) -> None:
    address, password, public_id = create_dovecot_mailbox(services_, dovecot)
    dovecot.deliver(address, mail("à supprimer"))
    dovecot.deliver(address, mail("à garder"))
    wait_until(lambda: len(subjects(services_, public_id)) == 2, what="the import")
    with desktop_client(dovecot, address, password) as desktop:
        desktop.delete_messages(desktop.search(["SUBJECT", "supprimer"]))
        desktop.expunge()
    wait_until(lambda: subjects(services_, public_id) == ["à garder"], what="the expunge")


def test_flags_and_expunges_made_while_away_are_found_on_reconnect(
    services_, dovecot, tracking
) -> None:
    """QRESYNC: one FETCH (CHANGEDSINCE, VANISHED); CONDSTORE: SEARCH MODSEQ and a UID list."""
    address, password, public_id = create_dovecot_mailbox(
        services_, dovecot, already_there=[mail("lu ailleurs"), mail("a effacer"), mail("intact")]
    )
    with RunningWorker(services_):
        wait_until(lambda: len(subjects(services_, public_id)) == 3, what="the import")
    with desktop_client(dovecot, address, password) as desktop:
        desktop.add_flags(desktop.search(["SUBJECT", "lu ailleurs"]), [b"\\Seen"])
        desktop.delete_messages(desktop.search(["SUBJECT", "effacer"]))
        desktop.expunge()

    def cache() -> dict[str, bool]:
        with services_.sessions() as db:
            rows = db.scalars(select(Message).join(Mailbox).where(Mailbox.public_id == public_id))
            return {m.subject: m.seen for m in rows}

    with RunningWorker(services_):
        wait_until(
            lambda: cache() == {"lu ailleurs": True, "intact": False},
            what="the changes made while away",
        )
    # Read elsewhere, and deleted unread: each clears a notification on the phones.
    assert outbox_count(services_, public_id, kind="mail.read") == 2


def test_a_uidvalidity_change_rebuilds_the_folder_without_new_pushes(services_, dovecot) -> None:
    address, _password, public_id = create_dovecot_mailbox(services_, dovecot)
    dovecot.deliver(address, mail("un"))
    with RunningWorker(services_):
        wait_until(lambda: subjects(services_, public_id) == ["un"], what="first sync")
    dovecot.doveadm("mailbox", "update", "-u", address, "--uid-validity", "4242", "INBOX")
    with RunningWorker(services_):

        def rebuilt() -> bool:
            with services_.sessions() as db:
                folder = db.scalar(
                    select(Folder)
                    .join(Mailbox)
                    .where(Mailbox.public_id == public_id, Folder.name == "INBOX")
                )
                return folder.uidvalidity == 4242

        wait_until(rebuilt, what="the folder to be rebuilt")
    assert subjects(services_, public_id) == ["un"]
    assert outbox_count(services_, public_id) == 0


def test_a_server_certificate_we_do_not_trust_is_an_error_not_a_downgrade(
    make_app, dovecot
) -> None:
    app = make_app()  # system CA store: the throwaway CA is unknown
    services = app.extensions["estafette"]
    _address, _password, public_id = create_dovecot_mailbox(services, dovecot)
    with RunningWorker(services):
        state = wait_until(
            lambda: (s := sync_state(services, public_id))[0] == "error" and s,
            what="the certificate error",
        )
    assert "certificate" in state[1]
    app.extensions["estafette"].engine.dispose()


def test_starttls_mailboxes_sync_too(services_, dovecot, worker) -> None:
    address, _password, public_id = create_dovecot_mailbox(services_, dovecot, security="starttls")
    dovecot.deliver(address, mail("via starttls"))
    wait_until(lambda: subjects(services_, public_id) == ["via starttls"], what="STARTTLS sync")


def test_a_server_restart_mid_idle_is_survived(make_app, tmp_path: Path) -> None:
    with DovecotServer(tmp_path / "restartable") as server:
        app = make_app(ESTAFETTE_CA_BUNDLE=str(server.ca_cert_path))
        services = app.extensions["estafette"]
        address, _password, public_id = create_dovecot_mailbox(services, server)
        with RunningWorker(services):
            wait_until(lambda: sync_state(services, public_id)[0] == "ok", what="first sync")
            server.restart()
            server.deliver(address, mail("après redémarrage"))
            wait_for_recovery(
                services, public_id, ["après redémarrage"], what="the worker to reconnect and fetch"
            )
        assert outbox_count(services, public_id) == 1
        app.extensions["estafette"].engine.dispose()


def test_a_server_bye_is_followed_by_a_reconnect_and_counted(services_, dovecot, worker) -> None:
    from prometheus_client import REGISTRY

    def reconnects() -> float:
        return REGISTRY.get_sample_value("estafette_sync_reconnects_total") or 0.0

    address, _password, public_id = create_dovecot_mailbox(services_, dovecot)
    wait_until(lambda: sync_state(services_, public_id)[0] == "ok", what="first sync")
    before = reconnects()
    dovecot.doveadm("kick", address)  # Dovecot says "* BYE" and closes the session
    wait_until(lambda: reconnects() > before, what="the BYE to be noticed")
    dovecot.deliver(address, mail("après le BYE"))
    wait_for_recovery(services_, public_id, ["après le BYE"], what="the reconnect")


def test_a_half_open_connection_is_noticed_at_renewal_and_reopened(
    make_app, dovecot, monkeypatch
) -> None:
    """A NAT that forgets the flow sends no FIN: only the renewal's timeout can tell."""
    import backend.sync.worker as worker_module

    monkeypatch.setattr(worker_module, "IDLE_RENEW_SECONDS", 1.0)
    app = make_app(
        ESTAFETTE_CA_BUNDLE=str(dovecot.ca_cert_path), ESTAFETTE_IMAP_TIMEOUT_SECONDS="3"
    )
    services = app.extensions["estafette"]
    with SilentRelay(dovecot.host, dovecot.imaps_port) as relay:
        address, _password, public_id = create_dovecot_mailbox(services, dovecot)
        with session_scope(services.sessions) as db:
            db.execute(
                update(Mailbox).where(Mailbox.public_id == public_id).values(imap_port=relay.port)
            )
        with RunningWorker(services):
            wait_until(lambda: sync_state(services, public_id)[0] == "ok", what="first sync")
            relay.silence()
            dovecot.deliver(address, mail("pendant la coupure"))
            state = wait_until(
                lambda: (
                    sync_state(services, public_id)[0] != "ok" and sync_state(services, public_id)
                ),
                what="the silent connection to be given up",
            )
            assert "TimeoutError" in (state[1] or "")
            relay.restore()
            wait_for_recovery(
                services,
                public_id,
                ["pendant la coupure"],
                what="a new connection to fetch what came during the silence",
            )
    assert outbox_count(services, public_id) == 1
    services.engine.dispose()


def test_no_mail_content_reaches_logs_or_metrics_even_at_debug(
    services_, dovecot, worker, caplog
) -> None:
    import logging
    from email.message import EmailMessage

    from prometheus_client import generate_latest

    import backend.logs  # noqa: F401 - its logger settings are part of what is tested

    caplog.set_level(logging.DEBUG)
    address, _password, public_id = create_dovecot_mailbox(services_, dovecot)
    wait_until(lambda: sync_state(services_, public_id)[0] == "ok", what="first sync")
    canary = EmailMessage()
    canary["From"] = "Dr Canari-Expediteur <canari.expediteur@ch-exemple.mssante.fr>"
    canary["To"] = address
    canary["Subject"] = "CANARI-SUJET Durand Jeanne née le 01/02/1960"
    canary.set_content("CANARI-CORPS résultats biologiques")
    canary.add_attachment(b"%PDF", maintype="application", subtype="pdf", filename="CANARI.pdf")
    dovecot.deliver(address, bytes(canary))
    wait_until(lambda: subjects(services_, public_id), what="the canary to be synced")

    leaked = caplog.text + generate_latest().decode()
    for needle in ("CANARI", "Durand", "canari.expediteur", "01/02/1960"):
        assert needle not in leaked


def test_idle_is_renewed_before_the_server_gives_up_on_it(services_, dovecot, monkeypatch) -> None:
    from prometheus_client import REGISTRY

    import backend.sync.worker as worker_module

    def renewals() -> float:
        return REGISTRY.get_sample_value("estafette_sync_idle_renewals_total") or 0.0

    monkeypatch.setattr(worker_module, "IDLE_RENEW_SECONDS", 0.3)  # RFC 2177: < 29 min
    address, _password, public_id = create_dovecot_mailbox(services_, dovecot)
    with RunningWorker(services_):
        wait_until(lambda: sync_state(services_, public_id)[0] == "ok", what="first sync")
        before = renewals()
        wait_until(lambda: renewals() >= before + 3, what="several IDLE renewals")
        dovecot.deliver(address, mail("entre deux renouvellements"))
        wait_until(lambda: subjects(services_, public_id), what="mail between renewals")
    assert outbox_count(services_, public_id) == 1
    assert sync_state(services_, public_id)[0] == "ok"


def test_the_patient_comes_from_the_xdm_metadata_not_from_the_x_mss_ins_flag(
    services_, dovecot, worker
) -> None:
    address, _password, public_id = create_dovecot_mailbox(services_, dovecot)
    wait_until(lambda: sync_state(services_, public_id)[0] == "ok", what="the mailbox in sync")
    dovecot.deliver(address, samples.xdm_discharge_letter(to=address))
    dovecot.deliver(address, mail("sans patient"))

    def patients() -> dict[str, dict | None]:
        with services_.sessions() as db:
            rows = db.scalars(select(Message).join(Mailbox).where(Mailbox.public_id == public_id))
            return {m.subject: m.patient for m in rows}

    found = wait_until(lambda: len(patients()) == 2 and patients(), what="both imported")
    xdm_patient = next(p for s, p in found.items() if s != "sans patient")
    expected = samples.DEMO_PATIENT
    assert xdm_patient["ins"] == expected.ins  # the header's "O" is a flag, not the INS
    assert expected.family in xdm_patient["name"]
    assert xdm_patient["birth_date"].replace("-", "") == expected.birth_date
    assert found["sans patient"] is None
