"""The OpenAPI document describes the provider sign-in calls, the public ones as public."""

from __future__ import annotations

from tests.support import body

PUBLIC = {
    ("get", "/api/v1/auth/oidc/{provider}/start"),
    ("get", "/api/v1/auth/oidc/{provider}/callback"),
    ("post", "/api/v1/auth/oidc/exchange"),
    ("post", "/api/v1/auth/oidc/{provider}/backchannel-logout"),
}


def test_the_document_describes_the_sign_in_calls_and_their_problems(client):
    paths = body(client.get("/api/v1/openapi.json"))["paths"]

    for method, path in PUBLIC:
        operation = paths[path][method]
        assert operation["security"] == [], path
        assert operation.get("summary") or operation.get("description"), path
    link = paths["/api/v1/auth/oidc/link"]["post"]
    assert link["security"] == [{"bearer": []}]  # a signed-in session
    assert {"401", "409"} <= set(link["responses"])
    exchange = paths["/api/v1/auth/oidc/exchange"]["post"]["responses"]
    assert "account_not_provisioned" in exchange["403"]["description"]
    admin = paths["/api/v1/admin/directory-sync"]["post"]["responses"]
    assert "directory_unavailable" in admin["502"]["description"]
