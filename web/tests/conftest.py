"""Fixtures of the web client's browser tests: one gateway and one Chromium per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import AXE, SIZES, Gateway, launch_chromium, running_gateway
from playwright.sync_api import Browser, sync_playwright


def pytest_itemcollected(item: pytest.Item) -> None:
    """All browser tests on one xdist worker: they share a gateway and a browser. Marked
    as each is collected, so tests/xdist_ids.py sees the group when it sets node ids."""
    if "web/tests" in str(item.path):
        item.add_marker(pytest.mark.browser)
        item.add_marker(pytest.mark.xdist_group("web-browser"))


@pytest.fixture(scope="session")
def axe_script() -> str:
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `make web` (npm ci in web/) first")
    return str(AXE)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("web-gateway"), list(SIZES)) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()
