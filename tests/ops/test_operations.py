"""Liveness, readiness and metrics, as an orchestrator and Prometheus see them."""

from __future__ import annotations

from sqlalchemy import text


def test_healthz_says_the_process_is_up(client) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_is_ready_on_a_migrated_database(client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ready"


def test_readyz_is_not_ready_when_migrations_are_missing(client, services) -> None:
    with services.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["code"] == "not_ready"


def test_metrics_are_in_prometheus_text_format(client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    assert b"estafette_sync_connected_mailboxes" in response.data
    assert b"estafette_push_queue_depth" in response.data
