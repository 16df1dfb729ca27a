"""Prometheus sees the whole gateway: the api under gunicorn, a sync worker and a push
dispatcher, each scraped during a real delivery to Dovecot and a push to the local FCM.

The api runs as deployed (infra/gunicorn.conf.py, two workers): its /metrics sums every
worker's counters (prometheus-client multiprocess mode), whichever worker answers, and
adds the database's shared state. No scrape carries a subject, a sender or an address.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import create_dovecot_mailbox, create_user
from tests.support import Authenticator, bearer, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


class Processes:
    """Starts the gateway's processes with one environment; stops them all at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = {**os.environ, **env}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # gunicorn's config makes its own
        self.logs = logs
        self.started: list[subprocess.Popen] = []

    def _start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        with (self.logs / f"{name}.log").open("wb") as log:
            self.started.append(
                subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env={**self.env, **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def _wait(self, name: str, url: str) -> str:
        child = self.started[-1]

        def answers() -> bool:
            assert child.poll() is None, (self.logs / f"{name}.log").read_text()
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, timeout=60, what=f"{name} to answer")
        return url.rsplit("/", 1)[0]

    def api(self) -> str:
        port = free_port()
        gunicorn = [sys.executable, "-m", "gunicorn", "-c", "infra/gunicorn.conf.py"]
        self._start(
            "api", gunicorn, {"ESTAFETTE_BIND": f"127.0.0.1:{port}", "ESTAFETTE_WORKERS": "2"}
        )
        return self._wait("api", f"http://127.0.0.1:{port}/readyz")

    def flask(self, command: str) -> str:
        port = free_port()
        flask = [sys.executable, "-m", "flask", "--app", "mobile_api", command]
        self._start(command, flask, {"ESTAFETTE_METRICS_PORT": str(port)})
        return self._wait(command, f"http://127.0.0.1:{port}/healthz")

    def stop(self) -> None:
        for child in self.started:
            child.terminate()
        for child in self.started:
            child.wait(timeout=30)


@pytest.fixture
def processes(base_env, dovecot, fcm_credentials, fake_fcm, tmp_path) -> Iterator[Processes]:
    env = {
        **base_env,
        "ESTAFETTE_CA_BUNDLE": str(dovecot.ca_cert_path),
        "ESTAFETTE_FCM_CREDENTIALS": str(fcm_credentials),
        "ESTAFETTE_FCM_ENDPOINT": fake_fcm.base_url,
    }
    running = Processes(env, tmp_path)
    yield running
    running.stop()


def scrape(base: str) -> tuple[str, dict[tuple[str, frozenset], float]]:
    """The exposition text, and every sample by (name, labels)."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, samples


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum over the samples of `name` whose labels include `labels` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def _mail(canary: str, to: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"Dr {canary} <{canary.lower()}@ch-exemple.mssante.fr>"
    message["To"] = to
    message["Subject"] = f"Résultats {canary}"
    message.set_content(f"Patient {canary}.")
    return bytes(message)


def test_the_three_processes_show_a_delivery_and_its_push_and_no_health_data(
    processes: Processes, make_app, dovecot, fake_fcm
) -> None:
    services = make_app(ESTAFETTE_CA_BUNDLE=str(dovecot.ca_cert_path)).extensions["estafette"]
    username = create_user(services)
    address, _password, public_id = create_dovecot_mailbox(services, dovecot, owner=username)
    api, sync, push = processes.api(), processes.flask("sync"), processes.flask("push")

    http = httpx.Client(base_url=api, timeout=10)
    device = {"name": "Pixel de garde", "platform": "android", "push_token": "tok-metrics"}
    auth = bearer(Authenticator().sign_in(http, username, device=device)["access_token"])
    wait_until(
        lambda: value(scrape(sync)[1], "estafette_sync_connected_mailboxes") == 1,
        timeout=60,
        what="the mailbox in IDLE",
    )
    canary = f"CANARY{uuid.uuid4().hex[:10].upper()}"
    dovecot.deliver(address, _mail(canary, address))
    fake_fcm.wait_for(lambda reqs: [r for r in reqs if r.token == "tok-metrics"], timeout=30)
    listing = http.get(f"/api/v1/mailboxes/{public_id}/messages", headers=auth)
    assert listing.status_code == 200 and len(listing.json()["items"]) == 1

    # Every answer counted once, whichever of the two gunicorn workers gave it.
    for _ in range(10):
        assert http.get("/healthz").status_code == 200
    api_text, api_samples = scrape(api)
    ok = {"route": "/healthz", "status": "200"}
    assert value(api_samples, "estafette_api_responses_total", **ok) == 10
    assert value(api_samples, "estafette_api_responses_total", status="200") >= 14
    assert value(api_samples, "estafette_api_request_seconds_count") >= 14
    assert value(api_samples, "estafette_audit_write_seconds_count") >= 2  # sign-in steps
    assert value(api_samples, "estafette_mailboxes", state="ok") == 1
    assert value(api_samples, "estafette_sync_lease_holders") == 1
    assert value(api_samples, "estafette_database_up") == 1
    assert ("estafette_outbox_oldest_seconds", frozenset()) in api_samples

    sync_text, sync_samples = scrape(sync)
    assert value(sync_samples, "estafette_sync_catch_up_interval_seconds_count") >= 2
    assert 0 <= value(sync_samples, "estafette_sync_catch_up_age_seconds") < 60

    push_text = ""

    def pushed_ok() -> bool:
        nonlocal push_text
        push_text, samples = scrape(push)
        return value(samples, "estafette_push_sent_total", outcome="ok", platform="fcm") >= 1

    wait_until(pushed_ok, timeout=30, what="the push counted by outcome and platform")

    for text in (api_text, sync_text, push_text):
        for secret in (canary, address, username, "tok-metrics"):
            assert secret.lower() not in text.lower()
