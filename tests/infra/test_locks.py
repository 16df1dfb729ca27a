"""The locks install what requirements*.txt ask for: a package added without `make lock`
would otherwise stop every `make test` at the hash-checked install."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def _requirements(name: str) -> list[Requirement]:
    """The requirements of a human-edited file, following its `-r` includes."""
    found: list[Requirement] = []
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found += _requirements(line[3:].strip())
        elif line:
            found.append(Requirement(line))
    return found


def _locked(name: str) -> dict[str, tuple[str, int]]:
    """Each pinned package of a lock: (version, how many hashes it carries)."""
    pins: dict[str, tuple[str, int]] = {}
    current = None
    for line in (ROOT / name).read_text().splitlines():
        if match := _PIN.match(line):
            current = canonicalize_name(match[1])
            pins[current] = (match[2], 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
    return pins


@pytest.mark.parametrize(
    ("source", "lock"),
    [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")],
)
def test_the_lock_pins_every_requirement_at_an_allowed_version(source: str, lock: str) -> None:
    pins = _locked(lock)
    unmet = [
        str(req)
        for req in _requirements(source)
        if canonicalize_name(req.name) not in pins
        or not req.specifier.contains(pins[canonicalize_name(req.name)][0], prereleases=True)
    ]

    assert unmet == [], f"run `make lock`: {lock} does not satisfy {unmet}"


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_every_locked_package_carries_its_hashes(lock: str) -> None:
    assert [name for name, (_, hashes) in _locked(lock).items() if hashes == 0] == []


def test_the_dev_lock_installs_the_runtime_lock_unchanged() -> None:
    runtime, dev = _locked("requirements.lock"), _locked("requirements-dev.lock")

    assert {n: dev.get(n, ("missing",))[0] for n in runtime} == {
        n: v for n, (v, _) in runtime.items()
    }
