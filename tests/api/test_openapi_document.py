"""The OpenAPI document is a contract a client generator can trust: every operation is named
and tagged, says which token it takes, and lists the problems it can answer with their
`code` values (`mobile_api.openapi_contract`)."""

from __future__ import annotations

from openapi_spec_validator import validate

from backend.push import payloads
from mobile_api.errors import problem_codes
from tests.support import body

METHODS = ("get", "put", "post", "patch", "delete")
PROBLEM_JSON = "application/problem+json"


def _operations(document: dict) -> list[tuple[str, dict]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def _codes(answer: dict) -> list[str]:
    schema = answer["content"][PROBLEM_JSON]["schema"]
    return schema["properties"]["code"]["enum"]


def test_the_document_is_valid_openapi_3_1_with_servers(client) -> None:
    document = body(client.get("/api/v1/openapi.json"))
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert document["servers"]


def test_every_operation_has_its_own_operation_id(client) -> None:
    document = body(client.get("/api/v1/openapi.json"))
    ids = [(call, operation.get("operationId")) for call, operation in _operations(document)]
    assert [call for call, operation_id in ids if not operation_id] == []
    names = [operation_id for _call, operation_id in ids]
    assert len(names) == len(set(names)), "two operations share an operationId"
    assert ("GET /api/v1/mailboxes/{mailbox_id}/folders", "mailboxes_list_folders") in ids


def test_every_operation_has_a_tag_and_an_authenticated_one_documents_401(client) -> None:
    document = body(client.get("/api/v1/openapi.json"))
    untagged = [call for call, operation in _operations(document) if not operation.get("tags")]
    assert untagged == []
    authenticated = [
        (call, operation)
        for call, operation in _operations(document)
        if operation.get("security", document["security"])
    ]
    assert len(authenticated) > 30
    without_401 = [call for call, operation in authenticated if "401" not in operation["responses"]]
    assert without_401 == []
    for _call, operation in authenticated:
        assert "token_expired" in _codes(operation["responses"]["401"])


def test_sign_in_calls_declare_the_token_they_really_take(client) -> None:
    paths = body(client.get("/api/v1/openapi.json"))["paths"]
    assert paths["/api/v1/auth/login"]["post"]["security"] == []
    assert paths["/api/v1/auth/cps"]["post"]["security"] == []
    assert paths["/api/v1/auth/otp"]["post"]["security"] == [{"mfaToken": []}]
    assert paths["/api/v1/auth/otp/enroll"]["post"]["security"] == [{"mfaToken": []}]
    assert paths["/api/v1/auth/otp/activate"]["post"]["security"] == [{"mfaToken": []}]
    assert paths["/api/v1/auth/refresh"]["post"]["security"] == [{"refreshToken": []}]
    assert paths["/api/v1/mailboxes"]["get"]["security"] == [{"bearer": []}]


def test_problem_answers_enumerate_real_codes_where_they_can_happen(client) -> None:
    document = body(client.get("/api/v1/openapi.json"))
    known = problem_codes()
    for call, operation in _operations(document):
        for status, answer in operation["responses"].items():
            if status == "default" or PROBLEM_JSON not in answer.get("content", {}):
                continue
            codes = _codes(answer)
            assert codes, f"{call} {status} lists no code"
            assert set(codes) <= set(known[int(status)]), f"{call} {status}: unknown code"
    paths = document["paths"]
    login = paths["/api/v1/auth/login"]["post"]["responses"]
    assert _codes(login["401"]) == ["invalid_credentials"]
    assert {"locked", "rate_limited"} <= set(_codes(login["429"]))
    assert _codes(login["413"]) == ["payload_too_large"]
    assert "invalid_json" in _codes(login["400"])
    otp = paths["/api/v1/auth/otp"]["post"]["responses"]
    assert {"otp_invalid", "otp_replayed"} <= set(_codes(otp["401"]))
    assert "otp_not_enrolled" in _codes(otp["403"])
    message = paths["/api/v1/messages/{message_id}"]["get"]["responses"]
    assert _codes(message["404"]) == ["not_found"]
    assert "mailbox_unavailable" in _codes(message["503"])
    assert "fresh_mfa_required" in _codes(paths["/api/v1/admin/users"]["get"]["responses"]["401"])
    test_push = paths["/api/v1/devices/{device_id}/test-push"]["post"]["responses"]
    assert "no_push_token" in _codes(test_push["409"])


def test_push_payloads_are_documented_as_webhooks(client) -> None:
    document = body(client.get("/api/v1/openapi.json"))
    assert set(document["webhooks"]) == {payloads.NEW_MAIL, payloads.MAIL_READ, payloads.TEST}
    data = document["components"]["schemas"]["PushData"]
    assert data["properties"]["type"]["enum"] == [
        payloads.NEW_MAIL,
        payloads.MAIL_READ,
        payloads.TEST,
    ]
    assert "auth.required" in data["description"]


# What an app reads and sends to sign in, list, read and send mail.
PUBLIC = (
    "Problem",
    "Login",
    "LoginResult",
    "Code",
    "DeviceIn",
    "OtpSignIn",
    "Session",
    "Device",
    "Mailbox",
    "Folder",
    "Address",
    "Envelope",
    "MessagePage",
    "Message",
    "Attachment",
    "Change",
    "Sync",
    "Flags",
    "SendMessage",
    "PushData",
)


def test_public_schemas_describe_every_property_and_give_examples(client) -> None:
    schemas = body(client.get("/api/v1/openapi.json"))["components"]["schemas"]
    undescribed = [
        f"{name}.{prop}"
        for name in PUBLIC
        for prop, spec in schemas[name].get("properties", {}).items()
        if not spec.get("description")
    ]
    assert undescribed == []
    assert [name for name in PUBLIC if not schemas[name].get("description")] == []
    for name in ("Problem", "Login", "Code", "OtpSignIn", "Session", "PushData"):
        assert schemas[name]["examples"], name
