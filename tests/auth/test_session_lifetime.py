"""A session ends ESTAFETTE_SESSION_MAX_DAYS after its sign-in, however often it refreshes.

The start is the device's `created_at` (every sign-in creates its device), so it is
carried through refreshes by the database, not by the client.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask_jwt_extended import decode_token
from sqlalchemy import select

from backend.config import ConfigError, load_settings
from backend.storage.database import session_scope
from backend.storage.models import AuditRecord, Device, utcnow
from tests.factories import create_user
from tests.support import Authenticator, bearer


def _started(services, device_id: str, ago: timedelta) -> Device:
    """Pretend the session began `ago`, with recent activity (so idleness is not the cause)."""
    with session_scope(services.sessions) as db:
        device = db.scalar(select(Device).where(Device.public_id == device_id))
        device.created_at = utcnow() - ago
        device.last_seen_at = utcnow()
        return device


def _refresh(client, session: dict):
    return client.post("/api/v1/auth/refresh", headers=bearer(session["refresh_token"]))


def test_a_refresh_after_seven_days_is_refused_and_ends_the_session(client, services) -> None:
    create_user(services, "alice")
    session = Authenticator().sign_in(client, "alice")
    session = _refresh(client, session).get_json()  # a live, just-refreshed session
    _started(services, session["device_id"], timedelta(days=7, minutes=1))
    refused = _refresh(client, session)
    assert refused.status_code == 401 and refused.get_json()["code"] == "session_expired"
    with services.sessions() as db:
        device = db.scalar(select(Device).where(Device.public_id == session["device_id"]))
        assert device.revoked_at is not None
        actions = list(db.scalars(select(AuditRecord.action)))
    assert "session.expired" in actions
    after = client.get("/api/v1/devices", headers=bearer(session["access_token"]))
    assert after.status_code == 401


def test_an_access_token_past_the_lifetime_is_refused(client, services) -> None:
    create_user(services, "alice")
    session = Authenticator().sign_in(client, "alice")
    _started(services, session["device_id"], timedelta(days=7, seconds=1))
    response = client.get("/api/v1/devices", headers=bearer(session["access_token"]))
    assert response.status_code == 401 and response.get_json()["code"] == "session_expired"


def test_refreshed_tokens_never_outlive_the_session(app, client, services) -> None:
    create_user(services, "alice")
    session = Authenticator().sign_in(client, "alice")
    started = _started(services, session["device_id"], timedelta(days=7) - timedelta(minutes=5))
    end = int((started.created_at + timedelta(days=7)).timestamp())
    refreshed = _refresh(client, session)
    assert refreshed.status_code == 200, refreshed.get_json()
    pair = refreshed.get_json()
    with app.app_context():
        access = decode_token(pair["access_token"])
        refresh = decode_token(pair["refresh_token"])
    assert refresh["exp"] <= end and access["exp"] <= end
    assert 0 < pair["expires_in"] <= 300


def test_the_lifetime_is_configured_in_days(base_env, make_app) -> None:
    app = make_app(ESTAFETTE_SESSION_MAX_DAYS="1")
    assert app.extensions["estafette"].settings.session_max_days == 1
    app.extensions["estafette"].engine.dispose()
    assert load_settings({**base_env}).session_max_days == 7
    with pytest.raises(ConfigError, match="ESTAFETTE_SESSION_MAX_DAYS"):
        load_settings({**base_env, "ESTAFETTE_SESSION_MAX_DAYS": "0"})
