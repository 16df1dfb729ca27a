"""The sync worker against real Dovecot: new mail through IDLE, resumable state, failures."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlalchemy import func, select

from backend.demo.dovecot import DovecotServer
from backend.storage.models import Folder, Mailbox, Message, OutboxEvent
from backend.sync.worker import SyncWorker
from tests.factories import create_dovecot_mailbox
from tests.support import wait_until


def mail(subject: str, to: str = "x@chu-test.mssante.fr") -> bytes:
    message = EmailMessage()
    message["From"] = "Dr Test <test@ch-exemple.mssante.fr>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Corps du message.")
    return bytes(message)


@pytest.fixture
def sync_app(base_env, dovecot):
    """An app whose settings trust the test Dovecot's CA, with short leases."""
    from mobile_api import create_app

    app = create_app(
        {
            **base_env,
            "ESTAFETTE_CA_BUNDLE": str(dovecot.ca_cert_path),
            "ESTAFETTE_SYNC_LEASE_SECONDS": "6",
        }
    )
    yield app
    app.extensions["estafette"].engine.dispose()


class RunningWorker:
    def __init__(self, services) -> None:
        self.worker = SyncWorker(services.sessions, services.settings, pool_size=4)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> SyncWorker:
        self.thread.start()
        return self.worker

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.worker.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the sync worker did not stop"


@pytest.fixture
def services_(sync_app):
    return sync_app.extensions["estafette"]


@pytest.fixture
def worker(services_) -> Iterator[SyncWorker]:
    with RunningWorker(services_) as running:
        yield running


def _state(services, public_id: str) -> tuple[str, str | None]:
    with services.sessions() as db:
        mailbox = db.scalar(select(Mailbox).where(Mailbox.public_id == public_id))
        return mailbox.sync_state, mailbox.sync_detail


def _subjects(services, public_id: str) -> list[str]:
    with services.sessions() as db:
        mailbox_id = db.scalar(select(Mailbox.id).where(Mailbox.public_id == public_id))
        return sorted(
            m.subject for m in db.scalars(select(Message).where(Message.mailbox_id == mailbox_id))
        )


def _outbox(services, public_id: str, kind: str = "mail.new") -> int:
    with services.sessions() as db:
        mailbox_id = db.scalar(select(Mailbox.id).where(Mailbox.public_id == public_id))
        return db.scalar(
            select(func.count(OutboxEvent.id)).where(
                OutboxEvent.mailbox_id == mailbox_id, OutboxEvent.kind == kind
            )
        )


def test_existing_mail_is_imported_silently_and_new_mail_is_announced(
    services_, dovecot, worker
) -> None:
    address, _password, public_id = create_dovecot_mailbox(
        services_, dovecot, already_there=[mail("déjà là")]
    )
    wait_until(lambda: _state(services_, public_id)[0] == "ok", what="the mailbox in sync")
    wait_until(lambda: _subjects(services_, public_id) == ["déjà là"], what="the import")
    assert _outbox(services_, public_id) == 0

    dovecot.deliver(address, mail("nouveau"))
    wait_until(lambda: "nouveau" in _subjects(services_, public_id), what="IDLE to see it")
    assert _outbox(services_, public_id) == 1


def test_mail_that_arrived_while_away_is_fetched_on_reconnect(services_, dovecot) -> None:
    address, _password, public_id = create_dovecot_mailbox(services_, dovecot)
    with RunningWorker(services_):
        wait_until(lambda: _state(services_, public_id)[0] == "ok", what="first sync")
    dovecot.deliver(address, mail("pendant l'absence"))
    with RunningWorker(services_):
        wait_until(
            lambda: _subjects(services_, public_id) == ["pendant l'absence"],
            what="the catch-up on reconnect",
        )
    assert _outbox(services_, public_id) == 1


def test_flags_set_in_the_desktop_client_come_back_through_idle(services_, dovecot, worker) -> None:
    address, password, public_id = create_dovecot_mailbox(services_, dovecot)
    dovecot.deliver(address, mail("à lire"))
    wait_until(lambda: _state(services_, public_id)[0] == "ok", what="sync")
    wait_until(lambda: _subjects(services_, public_id), what="the import")

    with IMAPClient(
        dovecot.host, port=dovecot.imaps_port, ssl_context=dovecot.client_ssl_context()
    ) as desktop:
        desktop.login(address, password)
        desktop.select_folder("INBOX")
        desktop.add_flags(desktop.search("ALL"), [b"\\Seen", b"\\Flagged"])

    def flags() -> tuple[bool, bool]:
        with services_.sessions() as db:
            message = db.scalar(select(Message).join(Mailbox).where(Mailbox.public_id == public_id))
            return message.seen, message.flagged

    wait_until(lambda: flags() == (True, True), what="flags to come back")
    assert _outbox(services_, public_id, kind="mail.read") == 1


def test_an_expunge_in_the_desktop_client_leaves_the_cache(services_, dovecot, worker) -> None:
    address, password, public_id = create_dovecot_mailbox(services_, dovecot)
    dovecot.deliver(address, mail("à supprimer"))
    dovecot.deliver(address, mail("à garder"))
    wait_until(lambda: len(_subjects(services_, public_id)) == 2, what="the import")
    with IMAPClient(
        dovecot.host, port=dovecot.imaps_port, ssl_context=dovecot.client_ssl_context()
    ) as desktop:
        desktop.login(address, password)
        desktop.select_folder("INBOX")
        desktop.delete_messages(desktop.search(["SUBJECT", "supprimer"]))
        desktop.expunge()
    wait_until(lambda: _subjects(services_, public_id) == ["à garder"], what="the expunge")


def test_a_uidvalidity_change_rebuilds_the_folder_without_new_pushes(services_, dovecot) -> None:
    address, _password, public_id = create_dovecot_mailbox(services_, dovecot)
    dovecot.deliver(address, mail("un"))
    with RunningWorker(services_):
        wait_until(lambda: _subjects(services_, public_id) == ["un"], what="first sync")
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
    assert _subjects(services_, public_id) == ["un"]
    assert _outbox(services_, public_id) == 0


def test_a_server_certificate_we_do_not_trust_is_an_error_not_a_downgrade(
    base_env, dovecot
) -> None:
    from mobile_api import create_app

    app = create_app(base_env)  # system CA store: the throwaway CA is unknown
    services = app.extensions["estafette"]
    _address, _password, public_id = create_dovecot_mailbox(services, dovecot)
    with RunningWorker(services):
        state = wait_until(
            lambda: (s := _state(services, public_id))[0] == "error" and s,
            what="the certificate error",
        )
    assert "certificate" in state[1]
    app.extensions["estafette"].engine.dispose()


def test_starttls_mailboxes_sync_too(services_, dovecot, worker) -> None:
    address, _password, public_id = create_dovecot_mailbox(services_, dovecot, security="starttls")
    dovecot.deliver(address, mail("via starttls"))
    wait_until(lambda: _subjects(services_, public_id) == ["via starttls"], what="STARTTLS sync")


def test_a_server_restart_mid_idle_is_survived(base_env, tmp_path: Path) -> None:
    from mobile_api import create_app

    with DovecotServer(tmp_path / "restartable") as server:
        app = create_app({**base_env, "ESTAFETTE_CA_BUNDLE": str(server.ca_cert_path)})
        services = app.extensions["estafette"]
        address, _password, public_id = create_dovecot_mailbox(services, server)
        with RunningWorker(services):
            wait_until(lambda: _state(services, public_id)[0] == "ok", what="first sync")
            server.restart()
            server.deliver(address, mail("après redémarrage"))
            wait_until(
                lambda: _subjects(services, public_id) == ["après redémarrage"],
                timeout=30,
                what="the worker to reconnect and fetch",
            )
            assert _state(services, public_id)[0] == "ok"
        assert _outbox(services, public_id) == 1
        app.extensions["estafette"].engine.dispose()
