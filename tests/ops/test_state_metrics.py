"""The api's /metrics reads the shared state from the database at scrape time, so it
stays true when the process that would have counted it is dead."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from backend.audit.verify_status import read_status, write_status
from backend.storage.database import session_scope
from backend.storage.models import Mailbox, OutboxEvent, utcnow
from backend.store.cache import set_sync_state
from devtools.drills.world import World


def _samples(client) -> dict[tuple[str, tuple], float]:
    text = client.get("/metrics").get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_mailbox_retried_in_error_keeps_the_time_of_its_first_failure(services) -> None:
    world = World(services)
    mailbox_id, _public_id = world.mailbox(world.user())
    with session_scope(services.sessions) as db:
        set_sync_state(db=db, mailbox_id=mailbox_id, state="error", detail="login refused")
    an_hour_ago = utcnow() - timedelta(hours=1)
    with session_scope(services.sessions) as db:
        db.execute(update(Mailbox).values(sync_changed_at=an_hour_ago))
        set_sync_state(db=db, mailbox_id=mailbox_id, state="error", detail="login refused again")
    with services.sessions() as db:
        assert db.get(Mailbox, mailbox_id).sync_changed_at == an_hour_ago
    with session_scope(services.sessions) as db:
        set_sync_state(db=db, mailbox_id=mailbox_id, state="ok")
    with services.sessions() as db:
        assert db.get(Mailbox, mailbox_id).sync_changed_at > an_hour_ago


def test_the_scrape_shows_mailboxes_by_state_the_longest_error_and_the_outbox(
    client, services
) -> None:
    world = World(services)
    user = world.user()
    in_error, _ = world.mailbox(user)
    world.mailbox(user)
    _message, event = world.new_mail(in_error)
    with session_scope(services.sessions) as db:
        set_sync_state(db=db, mailbox_id=in_error, state="error", detail="login refused")
        twenty_minutes_ago = utcnow() - timedelta(minutes=20)
        db.execute(
            update(Mailbox).where(Mailbox.id == in_error).values(sync_changed_at=twenty_minutes_ago)
        )
        db.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == event)
            .values(available_at=twenty_minutes_ago)
        )

    samples = _samples(client)
    assert samples[("estafette_mailboxes", (("state", "error"),))] == 1
    assert samples[("estafette_mailboxes", (("state", "connecting"),))] == 1
    assert samples[("estafette_mailbox_error_longest_seconds", ())] >= 1200
    assert samples[("estafette_outbox_depth", ())] == 1
    assert samples[("estafette_outbox_oldest_seconds", ())] >= 1200
    assert samples[("estafette_sync_lease_holders", ())] == 0
    assert samples[("estafette_database_up", ())] == 1
    assert ("estafette_audit_chain_verified", ()) not in samples  # no verify has run here


def test_the_last_periodic_audit_verify_is_exported(client, services) -> None:
    write_status(services.settings.var_dir, ok=False, records=12)
    samples = _samples(client)
    assert samples[("estafette_audit_chain_verified", ())] == 0
    assert samples[("estafette_audit_verify_timestamp_seconds", ())] > 0


def test_audit_verify_leaves_its_verdict_for_the_scrape(app, services) -> None:
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    status = read_status(services.settings.var_dir)
    assert status is not None and status.ok
