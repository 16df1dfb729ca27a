"""The shipped systemd units keep the CRLs fresh, for the app and for nginx."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

UNITS = Path(__file__).resolve().parents[2] / "infra" / "systemd"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def test_the_refresh_service_runs_the_command_and_reloads_nginx() -> None:
    service = _unit("estafette-crl-refresh.service")["Service"]
    assert service["ExecStart"].endswith("flask --app mobile_api crl refresh")
    assert "nginx" in service["ExecStartPost"] and service["ExecStartPost"].startswith("+")
    assert service["EnvironmentFile"] == "/etc/estafette/estafette.env"
    assert service["User"] == "estafette"


def test_the_timer_runs_at_least_hourly() -> None:
    timer = _unit("estafette-crl-refresh.timer")
    assert timer["Timer"]["OnCalendar"] == "hourly"
    assert timer["Install"]["WantedBy"] == "timers.target"
