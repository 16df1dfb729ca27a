"""Several api processes act as one: revocations and rate counts are shared (Redis or DB)."""

from __future__ import annotations

import pytest

from tests.factories import create_user
from tests.support import Authenticator, bearer


@pytest.fixture(params=["database", "redis"])
def two_api_processes(request: pytest.FixtureRequest, base_env: dict[str, str]):
    """Two independent apps on one database, as two gunicorn hosts would be."""
    from mobile_api import create_app

    env = dict(base_env)
    if request.param == "redis":
        env["ESTAFETTE_REDIS_URL"] = request.getfixturevalue("redis_url")
    apps = [create_app({**env, "TESTING": True}) for _ in range(2)]
    yield apps
    for app in apps:
        app.extensions["estafette"].engine.dispose()


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
def test_the_login_limit_is_shared_by_every_api_process(request, base_env, store) -> None:
    """Counts live in Redis or the database, never in one worker's memory."""
    from mobile_api import create_app

    env = dict(base_env)
    if store == "redis":
        env["ESTAFETTE_REDIS_URL"] = request.getfixturevalue("redis_url")
    first = create_app(env)
    create_user(first.extensions["estafette"], "alice")
    answers = [_wrong_login(first) for _ in range(10)]
    # Another worker, or this one restarted: it must see the same count.
    second = create_app(env)
    answers.append(_wrong_login(second))
    apps = [first, second]
    assert [a.status_code for a in answers[:10]] == [401] * 10
    limited = answers[10]
    assert limited.status_code == 429
    assert limited.get_json()["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0
    for app in apps:
        app.extensions["estafette"].engine.dispose()


def _wrong_login(app):
    return app.test_client().post(
        "/api/v1/auth/login",
        json={"username": "Alice", "password": "wrong password"},
        environ_base={"REMOTE_ADDR": "10.0.0.7"},
    )
