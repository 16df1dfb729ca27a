"""The shipped systemd units keep the CRLs fresh, for the app and for nginx."""

from __future__ import annotations

import pytest

from tests.infra.systemd_units import read_unit as _unit

pytestmark = pytest.mark.unit


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
