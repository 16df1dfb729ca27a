"""Sign-in throughput: password + TOTP + tokens, against a live gunicorn, with its floor.

Starts the api under gunicorn on a fresh PostgreSQL database, creates users with TOTP
active, and drives the full flow (POST /auth/login, then POST /auth/otp) from concurrent
clients. The floor measured in the same run is one Argon2id verification: the CPU a login
must spend by design. Prints one JSON line.

    .venv/bin/python -m bench.signin --users 400 --clients 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pyotp

from bench.gunicorn import free_port, start_gunicorn
from bench.scratch import ScratchDatabase, gateway_env

PASSWORD = "bench password long enough"


def _argon2_floor_ms(samples: int = 20) -> float:
    from backend.accounts import passwords

    stored = passwords.hash_password(PASSWORD)
    started = time.process_time()
    for _ in range(samples):
        passwords.verify_password(stored, PASSWORD)
    return (time.process_time() - started) / samples * 1000


def _create_users(env: dict[str, str], count: int) -> dict[str, str]:
    """Users with TOTP already active; returns {username: secret}."""
    os.environ.update(env)
    from backend.accounts import passwords
    from backend.config import load_settings
    from backend.storage.database import make_engine, make_session_factory, upgrade_schema
    from backend.storage.encryption import set_data_key
    from backend.storage.models import User

    settings = load_settings()
    set_data_key(settings.data_key)
    engine = make_engine(settings.database_url)
    upgrade_schema(engine)
    password_hash = passwords.hash_password(PASSWORD)  # one hash, shared: setup speed only
    secrets = {f"bench{i}": pyotp.random_base32() for i in range(count)}
    with make_session_factory(engine)() as db:
        db.add_all(
            User(username=name, password_hash=password_hash, totp_secret=secret, totp_active=True)
            for name, secret in secrets.items()
        )
        db.commit()
    engine.dispose()
    return secrets


def _sign_in(base: str, username: str, secret: str, index: int) -> float:
    # Distinct client addresses through the trusted proxy, as nginx would pass them:
    # the per-IP limit is real, and one benchmark host must not trip it.
    headers = {"X-Forwarded-For": f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"}
    started = time.perf_counter()
    with httpx.Client(base_url=base, timeout=30, headers=headers) as http:
        login = http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        login.raise_for_status()
        mfa = login.json()["mfa_token"]
        otp = http.post(
            "/api/v1/auth/otp",
            headers={"Authorization": f"Bearer {mfa}"},
            json={
                "code": pyotp.TOTP(secret).now(),
                "device": {"name": "bench", "platform": "android"},
            },
        )
        otp.raise_for_status()
        assert otp.json()["access_token"]
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    database = ScratchDatabase("signin")
    port = free_port()
    env = {
        **gateway_env(database.url),
        "ESTAFETTE_TRUSTED_PROXIES": "127.0.0.1",
        "ESTAFETTE_BIND": f"127.0.0.1:{port}",
        "ESTAFETTE_WORKERS": str(args.workers),
    }
    server = None
    try:
        secrets = _create_users(env, args.users)
        server = start_gunicorn(env, port)
        base = f"http://127.0.0.1:{port}"
        floor = _argon2_floor_ms()
        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            latencies = list(
                pool.map(lambda item: _sign_in(base, *item[1], item[0]), enumerate(secrets.items()))
            )
        elapsed = time.perf_counter() - started
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        database.drop()
    latencies.sort()
    print(
        json.dumps(
            {
                "logins_per_s": round(len(latencies) / elapsed, 1),
                "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 1),
                "p50_ms": round(statistics.median(latencies), 1),
                "argon2_cpu_ms": round(floor, 1),
                "users": args.users,
                "clients": args.clients,
                "gunicorn_workers": args.workers,
            }
        )
    )


if __name__ == "__main__":
    main()
