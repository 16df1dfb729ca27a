"""gunicorn and the app read ESTAFETTE_TRUSTED_PROXIES the same way (issue 14.6)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.config import ConfigError, load_settings
from tests.conftest import TEST_DATA_KEY, TEST_SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    """Settings alone: no database is opened, so one engine is enough."""
    return {
        "ESTAFETTE_DATABASE_URL": f"sqlite:///{tmp_path / 'estafette.db'}",
        "ESTAFETTE_SECRET_KEY": TEST_SECRET_KEY,
        "ESTAFETTE_DATA_KEY": TEST_DATA_KEY,
        "ESTAFETTE_VAR_DIR": str(tmp_path / "var"),
        "ESTAFETTE_CA_BUNDLE": "system",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),  # not one in /tmp per run
    }


def _gunicorn_forwarded_allow_ips(env: dict[str, str]) -> subprocess.CompletedProcess:
    """What gunicorn's config file makes of the environment, evaluated as gunicorn does."""
    code = (
        "import runpy; "
        "print(runpy.run_path('infra/gunicorn.conf.py')['forwarded_allow_ips'], end='')"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("value", "proxies"),
    [("none", ()), ("", ()), ("NONE", ()), ("127.0.0.1, ::1", ("127.0.0.1", "::1"))],
)
def test_trusted_proxies_mean_the_same_to_gunicorn_and_to_the_app(
    base_env: dict[str, str], value: str, proxies: tuple[str, ...]
) -> None:
    env = {**base_env, "ESTAFETTE_TRUSTED_PROXIES": value}
    assert load_settings(env).trusted_proxies == proxies
    answer = _gunicorn_forwarded_allow_ips(env)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout == ",".join(proxies)


def test_a_bad_proxy_stops_gunicorn_with_the_settings_message(base_env: dict[str, str]) -> None:
    env = {**base_env, "ESTAFETTE_TRUSTED_PROXIES": "nginx.local"}
    with pytest.raises(ConfigError, match="ESTAFETTE_TRUSTED_PROXIES"):
        load_settings(env)
    answer = _gunicorn_forwarded_allow_ips(env)
    assert answer.returncode != 0
    assert "ESTAFETTE_TRUSTED_PROXIES: 'nginx.local' is not an IP or network" in answer.stderr


def test_gunicorn_starts_the_workers_metrics_directory_empty(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    """A previous run's counters would be summed into the new run's /metrics."""
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_4242.db").write_bytes(b"stale")
    answer = _gunicorn_forwarded_allow_ips(base_env)
    assert answer.returncode == 0, answer.stderr
    assert list(metrics.iterdir()) == []
