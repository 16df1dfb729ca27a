"""Redis down, per device (issue 21.9): the api degrades to the database and pushes flow.

Real `flask push` on PostgreSQL, the api with its rate limits and revocations in a
redis-server of the drill's own, stopped in the middle. Each signed-in device keeps
listing, re-registering and signing in without a 5xx, keeps getting its pushes, and once
Redis is back (empty) a revocation made meanwhile still holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from backend.storage.models import User
from devtools.drills.push_harness import DrillGateway, FakeFcm, everything_received, tally, wait_for
from tests.factories import create_user
from tests.services.redis_server import OwnRedis
from tests.support import Authenticator, bearer

pytestmark = [
    pytest.mark.drill,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]

DEVICES = 4


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_redis_down_no_device_sees_a_5xx_and_every_push_arrives(
    database_url: str, fake_fcm: FakeFcm, own_redis: OwnRedis, tmp_path: Path
) -> None:
    from backend.storage import redis_outage
    from mobile_api import create_app

    redis_env = {"ESTAFETTE_REDIS_URL": own_redis.url}
    with DrillGateway(database_url, fake_fcm, tmp_path, extra_env=redis_env) as gateway:
        env = {k: v for k, v in gateway.env.items() if k.startswith("ESTAFETTE_")}
        app = create_app({**env, "TESTING": True})
        services, client = app.extensions["estafette"], app.test_client()
        phones: dict[str, dict] = {}  # push token -> session
        members = []
        for n in range(DEVICES):
            username = create_user(services, f"soignant{n}")
            session = Authenticator().sign_in(client, username)
            token = f"fcm-token-{n}"
            registered = client.put(
                f"/api/v1/devices/{session['device_id']}/push-token",
                json={"push_token": token, "platform": "android"},
                headers=bearer(session["access_token"]),
            )
            assert registered.status_code == 200, registered.get_json()
            phones[token] = session
            with services.sessions() as db:
                members.append(db.scalar(select(User.id).where(User.username == username)))
        mailbox_id, public_id = gateway.world.mailbox(*members)
        gateway.start("push")

        own_redis.stop()
        statuses = []
        for token, session in phones.items():
            headers = bearer(session["access_token"])
            statuses += [
                client.get("/api/v1/mailboxes", headers=headers).status_code,
                client.get("/api/v1/devices", headers=headers).status_code,
                client.put(
                    f"/api/v1/devices/{session['device_id']}/push-token",
                    json={"push_token": token, "platform": "android"},
                    headers=headers,
                ).status_code,
            ]
        statuses.append(
            client.post(
                "/api/v1/auth/login", json={"username": "soignant0", "password": "x" * 12}
            ).status_code
        )
        signed_out, revoked = next(iter(phones.items()))  # no push is owed to it any more
        logout = client.post("/api/v1/auth/logout", headers=bearer(revoked["access_token"]))
        statuses.append(logout.status_code)
        gateway.queue_mail(mailbox_id)
        expected = {(public_id, token) for token in phones if token != signed_out}
        wait_for(everything_received(gateway, expected), timeout=30, what="pushes, Redis down")

        own_redis.start()  # it comes back empty: nothing was saved
        redis_outage.REDIS_RETRY_SECONDS, saved = 0.0, redis_outage.REDIS_RETRY_SECONDS
        try:
            after = client.get("/api/v1/devices", headers=bearer(revoked["access_token"]))
        finally:
            redis_outage.REDIS_RETRY_SECONDS = saved
        app.extensions["estafette"].engine.dispose()

    assert all(status < 500 for status in statuses), statuses
    assert logout.status_code == 204
    accounts = tally(gateway.fcm.requests, expected)
    assert {t: (a.lost, a.duplicated) for t, a in accounts.items()} == dict.fromkeys(
        {token for _mailbox, token in expected}, (0, 0)
    )
    assert (after.status_code, after.get_json()["code"]) == (401, "token_revoked")
