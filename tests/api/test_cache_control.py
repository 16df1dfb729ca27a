"""Health data and tokens are never stored by a cache: every /api/v1 answer says no-store.

RFC 6749 §5.1 requires it of token responses; message bodies and attachments are health
data. The walk covers every operation of the OpenAPI document, answers of all kinds
(success, 4xx problems) included.
"""

from __future__ import annotations

import re
from typing import Any

from tests.factories import create_user
from tests.support import Authenticator, bearer


class RecordingClient:
    """The test client, keeping every response it got."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.responses: list[tuple[str, str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(path: str, *args: Any, **kwargs: Any) -> Any:
            response = method(path, *args, **kwargs)
            self.responses.append((name.upper(), path, response))
            return response

        return call


def _cacheable(responses: list[tuple[str, str, Any]]) -> list[str]:
    return [
        f"{method} {path} -> {response.status_code}: {response.headers.get('Cache-Control')}"
        for method, path, response in responses
        if response.headers.get("Cache-Control") != "no-store"
        or response.headers.get("Pragma") != "no-cache"
    ]


def test_every_operation_of_the_openapi_document_answers_no_store(client, services) -> None:
    http = RecordingClient(client)
    tokens = Authenticator().sign_in(http, create_user(services, admin=True))
    spec = http.get("/api/v1/openapi.json").get_json()
    operations = [
        (method, re.sub(r"\{[^}]+\}", "x1", path))
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    # Calls that end the session go last, so the others run signed in.
    operations.sort(key=lambda op: op[0] == "delete" or "logout" in op[1] or "/auth/" in op[1])

    for method, path in operations:
        kwargs: dict[str, Any] = {"headers": bearer(tokens["access_token"])}
        if method in {"post", "put", "patch"}:
            kwargs["json"] = {}
        getattr(http, method)(path, **kwargs)

    assert len(operations) > 30
    assert {status for _m, _p, r in http.responses for status in [r.status_code // 100]} >= {2, 4}
    assert _cacheable(http.responses) == []
