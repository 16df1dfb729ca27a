"""Searching the trail by actor, action, mailbox and time, newest first, page by page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from backend.audit.trail import Actor
from tests.support import body

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _seed(services) -> None:
    """Two readers, two mailboxes, one record a minute."""
    for i in range(12):
        actor = "usr_anna" if i % 2 == 0 else "usr_bruno"
        services.audit.record(
            "message.read" if i % 3 else "message.download",
            actor=Actor(actor, "dev_1", "10.0.0.1"),
            target_type="message",
            target=f"msg_{i}",
            mailbox="mbx_cardio" if i < 6 else "mbx_pedia",
            at=T0 + timedelta(minutes=i),
        )


def _search(client, admin, **params):
    response = client.get(f"/api/v1/admin/audit?{urlencode(params)}", headers=admin.headers)
    assert response.status_code == 200, body(response)
    return body(response)


def test_search_by_actor_and_time_pages_newest_first(client, services, admin) -> None:
    _seed(services)
    params = {
        "actor": "usr_anna",
        "since": (T0 + timedelta(minutes=2)).isoformat(),
        "until": (T0 + timedelta(minutes=10)).isoformat(),
        "limit": 2,
    }
    first = _search(client, admin, **params)
    assert [r["target"] for r in first["items"]] == ["msg_8", "msg_6"]
    second = _search(client, admin, **params, cursor=first["next"])
    assert [r["target"] for r in second["items"]] == ["msg_4", "msg_2"]
    assert second["next"] is None
    record = first["items"][0]
    assert record["actor"] == "usr_anna" and record["mailbox"] == "mbx_pedia"
    assert record["occurred_at"].startswith("2026-03-02T08:08:00")
    assert len(record["hash"]) == 64 and isinstance(record["seq"], int)


def test_search_by_mailbox_and_action(client, services, admin) -> None:
    _seed(services)
    downloads = _search(client, admin, mailbox="mbx_cardio", action="message.download")
    assert [r["target"] for r in downloads["items"]] == ["msg_3", "msg_0"]
    everything = _search(client, admin, action="message.*", limit=200)
    assert len(everything["items"]) == 12


def test_the_search_itself_is_traced(client, services, admin) -> None:
    _search(client, admin, actor="usr_anna")
    traced = _search(client, admin, action="audit.search", actor=admin.user_id)
    assert traced["items"][-1]["details"] == {"actor": "usr_anna"}


def test_bad_filters_are_validation_errors(client, admin) -> None:
    for params in ({"since": "yesterday"}, {"cursor": "forged"}, {"limit": 1000}):
        response = client.get(f"/api/v1/admin/audit?{urlencode(params)}", headers=admin.headers)
        assert response.status_code == 422, params
        assert body(response)["code"] == "validation_error"
