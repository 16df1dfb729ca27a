"""Redis away or emptied: the API degrades to the database, never to a 500 (issue 21.9)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import create_user
from tests.services.redis_server import OwnRedis
from tests.support import Authenticator, bearer


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def gateway(make_app, own_redis):
    app = make_app(ESTAFETTE_REDIS_URL=own_redis.url)
    yield app


def test_with_redis_down_calls_and_sign_in_answer_without_a_500(gateway, own_redis) -> None:
    services = gateway.extensions["estafette"]
    client = gateway.test_client()
    create_user(services, "alice")
    create_user(services, "bruno")
    alice, bruno = Authenticator(), Authenticator()
    kept = alice.sign_in(client, "alice")
    ended = bruno.sign_in(client, "bruno")
    client.post("/api/v1/auth/logout", headers=bearer(ended["access_token"]))

    own_redis.stop()
    listing = client.get("/api/v1/devices", headers=bearer(kept["access_token"]))
    refused = client.get("/api/v1/devices", headers=bearer(ended["access_token"]))
    wrong = client.post("/api/v1/auth/login", json={"username": "alice", "password": "x" * 12})
    fresh = bruno.sign_in(client, "bruno")

    assert listing.status_code == 200
    assert (refused.status_code, refused.get_json()["code"]) == (401, "token_revoked")
    assert wrong.status_code == 401
    assert fresh["access_token"]


def test_a_revocation_made_while_redis_was_down_holds_after_it_returns_empty(
    gateway, own_redis
) -> None:
    services = gateway.extensions["estafette"]
    client = gateway.test_client()
    create_user(services, "alice")
    alice = Authenticator()
    before = alice.sign_in(client, "alice")
    client.post("/api/v1/auth/logout", headers=bearer(before["access_token"]))
    own_redis.stop()
    during = alice.sign_in(client, "alice")
    client.post("/api/v1/auth/logout", headers=bearer(during["access_token"]))

    own_redis.start()  # Redis keeps nothing on disk: it comes back empty
    from backend.storage import redis_outage

    redis_outage.REDIS_RETRY_SECONDS, saved = 0.0, redis_outage.REDIS_RETRY_SECONDS
    try:
        answers = [
            client.get("/api/v1/devices", headers=bearer(tokens["access_token"]))
            for tokens in (before, during)
        ]
    finally:
        redis_outage.REDIS_RETRY_SECONDS = saved

    assert [(a.status_code, a.get_json()["code"]) for a in answers] == [
        (401, "token_revoked"),
        (401, "token_revoked"),
    ]
