"""Redis away or emptied: the API degrades to the database, never to a 500 (issue 21.9)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.factories import create_user
from tests.support import Authenticator, bearer


class OwnRedis:
    """A redis-server of this test's own, on a free port, that the test may stop and start."""

    def __init__(self, workdir: Path) -> None:
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(self.binary).exists():
            pytest.fail("redis-server is not installed: the outage cannot be staged")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", str(self.workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.RedisError as exc:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    pytest.fail(f"redis-server did not start on port {self.port}: {exc}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def gateway(base_env, own_redis):
    from mobile_api import create_app

    app = create_app({**base_env, "ESTAFETTE_REDIS_URL": own_redis.url, "TESTING": True})
    yield app
    app.extensions["estafette"].engine.dispose()


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
