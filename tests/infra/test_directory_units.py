"""The shipped systemd units refresh the national directory every day."""

from __future__ import annotations

import pytest

from tests.infra.systemd_units import read_unit as _unit

pytestmark = pytest.mark.unit


def test_the_directory_service_runs_the_import_as_the_service_user() -> None:
    service = _unit("estafette-directory-import.service")["Service"]
    assert service["ExecStart"].endswith("flask --app mobile_api directory import")
    assert service["EnvironmentFile"] == "/etc/estafette/estafette.env"
    assert service["User"] == "estafette"
    assert service["Type"] == "oneshot"


def test_the_directory_timer_runs_daily() -> None:
    timer = _unit("estafette-directory-import.timer")
    assert timer["Timer"]["OnCalendar"] == "*-*-* 06:30:00"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"
