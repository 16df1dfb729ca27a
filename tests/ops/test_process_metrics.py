"""The sync and push processes show their own metrics: dashboards see mail stop.

Before, only the api served /metrics, and its registry never held a sync or push counter.
Each process now serves `/metrics` and `/healthz` on `ESTAFETTE_METRICS_PORT`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.factories import create_dovecot_mailbox
from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def process(make_app, base_env, dovecot, tmp_path):
    """`start(command)` runs `flask <command>` with a metrics port and gives its base URL."""
    app = make_app(ESTAFETTE_CA_BUNDLE=str(dovecot.ca_cert_path))  # migrated
    started: list[subprocess.Popen] = []

    services = app.extensions["estafette"]

    def start(command: str) -> str:
        port = free_port()
        env = {
            **os.environ,
            **base_env,
            "ESTAFETTE_CA_BUNDLE": str(dovecot.ca_cert_path),
            "ESTAFETTE_METRICS_PORT": str(port),
        }
        with (tmp_path / f"{command}.log").open("wb") as log:
            started.append(
                subprocess.Popen(
                    [sys.executable, "-m", "flask", "--app", "mobile_api", command],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{base}/healthz"), timeout=60, what=f"{command}'s /healthz")
        return base

    yield start, services
    for child in started:
        child.terminate()
        child.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _metric(base: str, name: str) -> float | None:
    for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_sync_worker_shows_the_mailboxes_it_holds_in_idle(process, dovecot) -> None:
    start, services = process
    address, _password, _public_id = create_dovecot_mailbox(services, dovecot)  # claimed at start
    base = start("sync")

    wait_until(
        lambda: _metric(base, "estafette_sync_connected_mailboxes") == 1.0,
        timeout=60,
        what="the mailbox in IDLE to be counted",
    )
    text = httpx.get(f"{base}/metrics", timeout=5).text
    assert address not in text  # labels are codes and states, never addresses
    assert httpx.get(f"{base}/nothing", timeout=5).status_code == 404


def test_a_dispatcher_shows_its_queue(process) -> None:
    start, _services = process
    base = start("push")

    wait_until(
        lambda: _metric(base, "estafette_push_queue_depth") is not None,
        timeout=30,
        what="the queue depth gauge",
    )
    assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
