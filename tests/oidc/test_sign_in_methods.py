"""GET /auth/methods: which sign-in buttons a client shows (names, kinds, labels; no secret)."""

from __future__ import annotations

import pytest

from backend.config import ConfigError
from tests.support import body


def test_without_a_provider_the_list_is_empty(make_app):
    client = make_app().test_client()

    answer = client.get("/api/v1/auth/methods")

    assert answer.status_code == 200
    assert body(answer) == {"methods": []}


def test_each_configured_provider_is_listed_without_a_token(client):
    answer = client.get("/api/v1/auth/methods")

    assert answer.status_code == 200
    assert body(answer)["methods"] == [
        {"name": "psc", "kind": "psc", "label": "Pro Santé Connect"},
        {"name": "idp", "kind": "idp", "label": "idp"},
    ]


def test_a_provider_can_name_its_button(make_app, oidc_settings):
    client = make_app(**oidc_settings(idp={"label": "Compte du CHU"})).test_client()

    [_psc, idp] = body(client.get("/api/v1/auth/methods"))["methods"]

    assert idp == {"name": "idp", "kind": "idp", "label": "Compte du CHU"}


def test_the_list_gives_away_no_secret_issuer_or_client(client, oidc_provider, client_secrets):
    text = client.get("/api/v1/auth/methods").get_data(as_text=True)

    assert oidc_provider.issuer not in text
    for client_id, secret in client_secrets.items():
        assert client_id not in text and secret not in text


def test_a_label_longer_than_a_button_is_refused_at_start_up(make_app, oidc_settings):
    with pytest.raises(ConfigError, match="label"):
        make_app(**oidc_settings(idp={"label": "x" * 65}))
