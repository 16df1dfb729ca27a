"""The shipped systemd units run the IdP directory sync, so leavers lose access soon."""

from __future__ import annotations

import pytest

from tests.infra.systemd_units import read_unit as _unit

pytestmark = pytest.mark.unit


def test_the_service_runs_the_sync_as_the_estafette_user() -> None:
    service = _unit("estafette-sync-idp.service")["Service"]
    assert service["ExecStart"].endswith("flask --app mobile_api users sync-idp")
    assert service["EnvironmentFile"] == "/etc/estafette/estafette.env"
    assert (service["User"], service["Type"]) == ("estafette", "oneshot")


def test_the_timer_runs_every_quarter_hour() -> None:
    timer = _unit("estafette-sync-idp.timer")
    assert timer["Timer"]["OnCalendar"] == "*:0/15"
    assert timer["Install"]["WantedBy"] == "timers.target"
