"""The OpenID provider fixture says why when it cannot start, instead of skipping."""

from __future__ import annotations

import pytest

from devtools.oidc_provider import OidcProvider, ProviderUnavailable, ensure_installed


def test_without_node_on_the_path_the_fixture_fails_naming_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no node, no npm

    with pytest.raises(ProviderUnavailable, match="node is not installed"):
        ensure_installed()
    with pytest.raises(ProviderUnavailable, match=r"Node\.js"):
        OidcProvider(tmp_path / "provider", clients=[], accounts={}).start()
