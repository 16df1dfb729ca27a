"""Several api processes act as one: revocations and rate counts are shared (Redis or DB)."""

from __future__ import annotations

import pytest

from tests.factories import create_user
from tests.support import Authenticator, bearer


@pytest.fixture(params=["database", "redis"])
def two_api_processes(request: pytest.FixtureRequest, make_app):
    """Two independent apps on one database, as two gunicorn hosts would be."""
    extra = {}
    if request.param == "redis":
        extra["ESTAFETTE_REDIS_URL"] = request.getfixturevalue("redis_url")
    return [make_app(**extra) for _ in range(2)]


def test_logout_on_one_process_is_refused_at_once_on_the_other(two_api_processes) -> None:
    first, second = two_api_processes
    create_user(first.extensions["estafette"], "alice")
    session = Authenticator().sign_in(first.test_client(), "alice")
    assert (
        second.test_client()
        .get("/api/v1/devices", headers=bearer(session["access_token"]))
        .status_code
        == 200
    )
    first.test_client().post("/api/v1/auth/logout", headers=bearer(session["access_token"]))
    response = second.test_client().get("/api/v1/devices", headers=bearer(session["access_token"]))
    assert response.status_code == 401 and response.get_json()["code"] == "token_revoked"


@pytest.mark.parametrize("store", ["database", "redis"])
def test_the_login_limit_is_shared_by_every_api_process(request, make_app, store) -> None:
    """Counts live in Redis or the database, never in one worker's memory."""
    extra = {}
    if store == "redis":
        extra["ESTAFETTE_REDIS_URL"] = request.getfixturevalue("redis_url")
    first = make_app(**extra)
    create_user(first.extensions["estafette"], "alice")
    answers = [_wrong_login(first) for _ in range(10)]
    # Another worker, or this one restarted: it must see the same count.
    second = make_app(**extra)
    answers.append(_wrong_login(second))
    assert [a.status_code for a in answers[:10]] == [401] * 10
    limited = answers[10]
    assert limited.status_code == 429
    assert limited.get_json()["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0


def _wrong_login(app):
    return app.test_client().post(
        "/api/v1/auth/login",
        json={"username": "Alice", "password": "wrong password"},
        environ_base={"REMOTE_ADDR": "10.0.0.7"},
    )
