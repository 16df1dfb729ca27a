"""The operator's configuration template and the README name every setting the code reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _settings_read_by_the_code() -> set[str]:
    return set(re.findall(r'"(ESTAFETTE_[A-Z_]+)"', (ROOT / "backend/config.py").read_text()))


def test_the_env_example_names_every_setting_the_code_reads() -> None:
    example = (ROOT / "infra/estafette.env.example").read_text()
    named = set(re.findall(r"^#?(ESTAFETTE_[A-Z_]+)=", example, flags=re.MULTILINE))

    assert _settings_read_by_the_code() - named == set()


def test_the_readme_configuration_table_names_every_setting_the_code_reads() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = set(re.findall(r"^\| `(ESTAFETTE_[A-Z_]+)` \|", readme, flags=re.MULTILINE))

    assert _settings_read_by_the_code() - rows == set()
