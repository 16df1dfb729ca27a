"""Metrics read from the database at scrape time: what no single process can count.

A mailbox's sync state, who holds the leases, how old the outbox's oldest event is: these
are rows, shared by every worker. Reading them at scrape time keeps them true when the
process that would have counted them is dead, which is exactly when the alerts matter
(no worker holding a lease; an outbox nobody drains). The api's /metrics exports them;
labels are states, never addresses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from backend.audit.verify_status import read_status
from backend.storage.models import Mailbox, OutboxEvent, utcnow

SYNC_STATES = ("connecting", "ok", "error")


def _age(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0


class StateCollector(Collector):
    """Four small aggregate queries per scrape; a database that does not answer gives
    `estafette_database_up 0` and nothing else from here."""

    def __init__(self, sessions: sessionmaker[Session], var_dir: Path, clock: Callable = utcnow):
        self._sessions = sessions
        self._var_dir = var_dir
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("estafette_database_up", "The database answered this scrape")
        try:
            families = self._from_database()
        except Exception:  # a scrape must not fail because the database blinked
            up.add_metric([], 0)
            yield up
        else:
            up.add_metric([], 1)
            yield up
            yield from families
        yield from self._audit()

    def _from_database(self) -> list[GaugeMetricFamily]:
        now = self._clock()
        with self._sessions() as db:
            rows = db.execute(select(Mailbox.sync_state, func.count()).group_by(Mailbox.sync_state))
            by_state = {state: count for state, count in rows}
            error_since = db.scalar(
                select(func.min(Mailbox.sync_changed_at)).where(Mailbox.sync_state == "error")
            )
            live = Mailbox.lease_expires_at > now
            holders, leased = db.execute(
                select(func.count(func.distinct(Mailbox.lease_owner)), func.count()).where(live)
            ).one()
            pending = OutboxEvent.done_at.is_(None)
            depth = db.scalar(select(func.count()).where(pending)) or 0
            oldest = db.scalar(
                select(func.min(OutboxEvent.available_at)).where(
                    pending, OutboxEvent.available_at <= now
                )
            )

        states = GaugeMetricFamily(
            "estafette_mailboxes", "Mailboxes by sync state", labels=["state"]
        )
        for state in sorted(set(SYNC_STATES) | set(by_state)):
            states.add_metric([state], by_state.get(state, 0))
        return [
            states,
            GaugeMetricFamily(
                "estafette_mailbox_error_longest_seconds",
                "How long the mailbox longest in `error` has been there (0: none)",
                value=_age(now, error_since),
            ),
            GaugeMetricFamily(
                "estafette_sync_lease_holders",
                "Sync workers holding at least one live mailbox lease",
                value=holders,
            ),
            GaugeMetricFamily(
                "estafette_sync_leased_mailboxes", "Mailboxes under a live lease", value=leased
            ),
            GaugeMetricFamily(
                "estafette_outbox_depth", "Outbox events not yet dispatched", value=depth
            ),
            GaugeMetricFamily(
                "estafette_outbox_oldest_seconds",
                "How long the oldest due outbox event has waited (0: none due)",
                value=_age(now, oldest),
            ),
        ]

    def _audit(self) -> Iterator[GaugeMetricFamily]:
        status = read_status(self._var_dir)
        if status is None:
            return
        yield GaugeMetricFamily(
            "estafette_audit_chain_verified",
            "1 if the last periodic `audit verify` found the chain and checkpoints intact",
            value=1 if status.ok else 0,
        )
        yield GaugeMetricFamily(
            "estafette_audit_verify_timestamp_seconds",
            "When the last periodic `audit verify` finished (Unix time)",
            value=status.at,
        )
