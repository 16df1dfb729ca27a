"""Liveness, readiness and Prometheus metrics for operators and orchestrators."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

import backend.metrics  # noqa: F401  (registers every metric, even before sync/push run)
from backend.storage.database import schema_status
from mobile_api.context import services
from mobile_api.errors import problem

blp = Blueprint("ops", __name__)


@blp.get("/healthz")
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@blp.get("/readyz")
def readyz() -> Response | dict:
    """The database answers and its schema is at the latest migration."""
    engine = services().engine
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current, head = schema_status(engine)
    except Exception:  # any driver error means "not ready", with no detail leaked
        return problem(503, "not_ready", "Not ready", "The database is not reachable")
    if current != head:
        return problem(503, "not_ready", "Not ready", "Database migrations are not applied")
    return {"status": "ready", "schema": current}


@blp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format. Metric labels never carry addresses or content."""
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)
