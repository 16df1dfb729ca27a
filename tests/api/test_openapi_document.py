"""The OpenAPI document names each operation: a client generator or a contract test can
point at one call by its operationId."""

from __future__ import annotations

from tests.support import body

METHODS = ("get", "put", "post", "patch", "delete")


def test_every_operation_has_its_own_operation_id(client) -> None:
    document = body(client.get("/api/v1/openapi.json"))
    ids = [
        (f"{method.upper()} {path}", operation.get("operationId"))
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]
    assert [call for call, operation_id in ids if not operation_id] == []
    names = [operation_id for _call, operation_id in ids]
    assert len(names) == len(set(names)), "two operations share an operationId"
    assert ("GET /api/v1/mailboxes/{mailbox_id}/folders", "mailboxes_list_folders") in ids
