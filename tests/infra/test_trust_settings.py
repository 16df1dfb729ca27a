"""Trust settings: no silent fall-back to the system CA store (security audit, issue 13)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.config import DEFAULT_CARD_POLICIES, ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]
NO_ENV_FILE = Path("/nonexistent/.env")


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith("ESTAFETTE_") and not name.startswith("ESTAFETTE_TEST_"):
            monkeypatch.delenv(name)
    return {
        "ESTAFETTE_DATABASE_URL": f"sqlite:///{tmp_path / 'estafette.db'}",
        "ESTAFETTE_SECRET_KEY": "x" * 40,
        "ESTAFETTE_DATA_KEY": "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
        "ESTAFETTE_VAR_DIR": str(tmp_path / "var"),
        "ESTAFETTE_NIL": "test-nil",
    }


def test_an_unset_ca_bundle_is_refused(bare) -> None:
    with pytest.raises(ConfigError, match="ESTAFETTE_CA_BUNDLE"):
        load_settings(bare, env_file=NO_ENV_FILE)


def test_the_system_store_must_be_named(bare) -> None:
    settings = load_settings({**bare, "ESTAFETTE_CA_BUNDLE": "system"}, env_file=NO_ENV_FILE)
    assert settings.ca_bundle is None
    assert settings.card_ca_bundle is None
    assert settings.card_policies == DEFAULT_CARD_POLICIES


def test_a_process_without_a_ca_bundle_does_not_start(bare, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESTAFETTE_")}
    result = subprocess.run(
        [sys.executable, "-c", "import mobile_api.wsgi"],
        env={**env, **bare},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "ESTAFETTE_CA_BUNDLE" in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ESTAFETTE_CARD_POLICIES", "igc-sante"),
        ("ESTAFETTE_CARD_POLICIES", "1.2.250.1.71,1.2.x"),
        ("ESTAFETTE_CRL_URLS", "ldap://annuaire.example/cn=crl"),
        ("ESTAFETTE_CARD_CA_BUNDLE", "/nonexistent/cards.pem"),
        ("ESTAFETTE_CA_BUNDLE", "/nonexistent/servers.pem"),
    ],
)
def test_malformed_trust_settings_are_refused(bare, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({**bare, "ESTAFETTE_CA_BUNDLE": "system", name: value}, env_file=NO_ENV_FILE)
