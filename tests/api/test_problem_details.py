"""Every error is RFC 9457 problem+json with a stable code: never HTML, never a 500."""

from __future__ import annotations

import logging

import pytest
from openapi_spec_validator import validate

PROBLEM = "application/problem+json"


def _assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response.content_type == PROBLEM
    problem = response.get_json(force=True)
    assert problem["status"] == status and problem["code"] == code
    assert problem["title"]
    assert "Traceback" not in response.get_data(as_text=True)
    return problem


def test_unknown_path_is_a_not_found_problem(client) -> None:
    _assert_problem(client.get("/api/v1/nowhere"), 404, "not_found")


def test_wrong_method_is_a_problem_with_allow_header(client) -> None:
    response = client.delete("/api/v1/auth/login")
    _assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_malformed_json_is_a_bad_request_problem(client) -> None:
    response = client.post("/api/v1/auth/login", data="{not json", content_type="application/json")
    _assert_problem(response, 400, "invalid_json")


def test_missing_fields_are_listed_per_field(client) -> None:
    problem = _assert_problem(
        client.post("/api/v1/auth/login", json={"username": "x"}), 422, "validation_error"
    )
    assert set(problem["errors"]) == {"password"}


def test_oversized_body_is_a_payload_too_large_problem(client, app) -> None:
    limit = app.config["MAX_CONTENT_LENGTH"]
    response = client.post(
        "/api/v1/auth/login", data=b"x" * (limit + 1), content_type="application/json"
    )
    _assert_problem(response, 413, "payload_too_large")


def test_a_nul_character_is_a_bad_value_problem_and_the_value_stays_out_of_the_log(
    client, caplog
) -> None:
    # PostgreSQL refuses NUL in text where SQLite stores it: either way, never a 500.
    caplog.set_level(logging.DEBUG)
    response = client.post(
        "/api/v1/auth/login", json={"username": "dr\u0000canary-7f3a", "password": "p"}
    )
    if client.application.extensions["estafette"].engine.dialect.name == "postgresql":
        _assert_problem(response, 400, "invalid_value")
    else:
        _assert_problem(response, 401, "invalid_credentials")
    assert "canary-7f3a" not in caplog.text


def test_missing_token_is_an_unauthorized_problem(client) -> None:
    _assert_problem(client.get("/api/v1/mailboxes"), 401, "unauthorized")


def test_garbage_token_is_an_invalid_token_problem(client) -> None:
    response = client.get("/api/v1/mailboxes", headers={"Authorization": "Bearer abc.def.ghi"})
    _assert_problem(response, 401, "token_invalid")


def test_forged_cursor_is_a_validation_problem(client, app) -> None:
    from tests.factories import create_user
    from tests.support import Authenticator, bearer

    services = app.extensions["estafette"]
    create_user(services, "carol")
    token = Authenticator().sign_in(client, "carol")["access_token"]
    response = client.get("/api/v1/mailboxes/mbx_x/messages?cursor=Zm9vYmFy", headers=bearer(token))
    # The mailbox is not hers: not_found comes first, ids cannot be probed.
    _assert_problem(response, 404, "not_found")


def test_an_unexpected_failure_is_a_plain_500_problem(app, client, caplog) -> None:
    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = client.get("/boom")
    problem = _assert_problem(response, 500, "internal_error")
    assert "secret internals" not in response.get_data(as_text=True)
    assert problem["detail"] == "The error was logged"


@pytest.mark.parametrize("path", ["/api/v1/openapi.json"])
def test_the_openapi_document_validates(client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    spec = response.get_json()
    validate(spec)
    for documented in (
        "/api/v1/auth/login",
        "/api/v1/auth/otp",
        "/api/v1/mailboxes",
        "/api/v1/mailboxes/{mailbox_id}/messages",
        "/api/v1/devices",
    ):
        assert documented in spec["paths"]


def test_a_lone_surrogate_is_a_validation_problem_on_its_field_not_a_500(client) -> None:
    response = client.post(
        "/api/v1/auth/login",
        data=b'{"username": "\\ud800", "password": "p"}',
        content_type="application/json",
    )

    problem = _assert_problem(response, 422, "validation_error")
    assert problem["errors"] == {"username": ["Not valid Unicode text."]}


def test_json_nested_thousands_of_levels_is_a_bad_request_not_a_500(client) -> None:
    deep = b'{"username": ' + b"[" * 5000 + b"]" * 5000 + b', "password": "p"}'

    response = client.post("/api/v1/auth/login", data=deep, content_type="application/json")

    _assert_problem(response, 400, "invalid_json")
