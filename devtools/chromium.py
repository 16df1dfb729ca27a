"""Debian's Chromium for the browser tests and the web client's bench: never a downloaded
one (Playwright's `executable_path`), with the flags a headless run on a server needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


class ChromiumUnavailable(RuntimeError):
    """The system browser is missing or would not start: the message says which."""


def require_chromium() -> None:
    """Before a long set-up: ChromiumUnavailable now rather than after it."""
    if not CHROMIUM.is_file():
        raise ChromiumUnavailable(
            f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium"
        )


def launch_chromium(playwright: Any) -> Any:
    """A Playwright Browser on Debian's Chromium; ChromiumUnavailable with the reason."""
    require_chromium()
    try:
        return playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
    except Exception as exc:  # Playwright's errors carry the browser's own output
        raise ChromiumUnavailable(f"Chromium could not start: {exc}") from exc
