"""Liveness, readiness and Prometheus metrics for operators and orchestrators."""

from __future__ import annotations

import os

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import text

import backend.metrics  # noqa: F401  (registers every metric, even before sync/push run)
from backend.certificates import CERTIFICATES
from backend.state_metrics import StateCollector
from backend.storage.database import schema_compatibility
from mobile_api.context import services
from mobile_api.errors import problem

blp = Blueprint("ops", __name__)


@blp.get("/healthz")
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@blp.get("/readyz")
def readyz() -> Response | dict:
    """The database answers and its schema is one this build runs on: its own head, or
    one expand-only step ahead during a rolling upgrade (`schema_state`: `expand_ahead`)."""
    engine = services().engine
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        schema = schema_compatibility(engine)
    except Exception:  # any driver error means "not ready", with no detail leaked
        return problem(503, "not_ready", "Not ready", "The database is not reachable")
    if schema.state == "behind":
        return problem(503, "not_ready", "Not ready", "Database migrations are not applied")
    if not schema.accepted:
        return problem(
            503, "not_ready", "Not ready", "The database schema is newer than this version runs on"
        )
    return {
        "status": "ready",
        "schema": schema.current,
        "code_schema": schema.head,
        "schema_state": schema.state,
    }


@blp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format. Metric labels never carry addresses or content.

    Under gunicorn (PROMETHEUS_MULTIPROC_DIR, set by infra/gunicorn.conf.py) every
    worker's counters are summed from their files, whichever worker answers; then the
    certificate inventory and the database's shared state, read now."""
    settings = services().settings
    state = CollectorRegistry(auto_describe=False)
    state.register(StateCollector(services().sessions, settings.var_dir))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(own)
        own.register(CERTIFICATES)
    else:
        own = REGISTRY
    return Response(generate_latest(own) + generate_latest(state), mimetype=CONTENT_TYPE_LATEST)
