"""The web client on a phone-like CPU: navigation to the first message row, cold and warm.

Loads a 10,000-envelope mailbox into a scratch PostgreSQL database (like bench.api_latency),
serves the gateway under gunicorn, and drives Debian's Chromium with its CPU throttled 4×
(CDP `Emulation.setCPUThrottlingRate`). Cold: no envelope on the device yet, the first page
comes from the API. Warm: the same navigation once IndexedDB holds the envelopes (after the
background GET /sync has stored them all). The floor is DOMContentLoaded of the same warm
navigations: the shell and its modules, before any mail is looked at. Also the gzip'd
size of the JavaScript the first load fetched. One JSON line.

The session is written into IndexedDB directly (the bench's users have no password): the
sign-in screens are the browser tests' business, not this timing's.

    .venv/bin/python -m bench.web_client
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import time

from playwright.sync_api import BrowserContext, sync_playwright

from bench.api_latency import _load_envelopes, _setup
from bench.gunicorn import free_port, start_gunicorn
from bench.scratch import ScratchDatabase, gateway_env
from devtools.chromium import ChromiumUnavailable, launch_chromium, require_chromium

ROW = "#pane-list a.row"
# Records, relative to navigation start, when the first message row enters the DOM: no
# polling delay in the figure.
MARK_FIRST_ROW = """
new MutationObserver(() => {
  if (!window.__firstRow && document.querySelector('#pane-list a.row')) {
    window.__firstRow = performance.now();
  }
}).observe(document, {childList: true, subtree: true});
"""


def _throttled_page(context: BrowserContext, rate: float):
    page = context.new_page()
    page.add_init_script(MARK_FIRST_ROW)
    cdp = context.new_cdp_session(page)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": rate})
    return page


def _sign_in_device(page, base: str, token: str) -> None:
    """Put the session where the app keeps it (its own store module), then leave."""
    page.goto(f"{base}/")
    page.wait_for_selector("input[name=username]")
    page.evaluate(
        """async (token) => {
            const store = await import('/app/store.js');
            await store.setMeta('session', {access_token: token, refresh_token: '', device_id: ''});
        }""",
        token,
    )


def _first_row_ms(page, url: str) -> tuple[float, float]:
    """(first message row, DOMContentLoaded: the shell's own floor), from navigation start."""
    page.goto("about:blank")  # a full navigation, not a same-document hash change
    page.goto(url)
    page.wait_for_selector(ROW, timeout=30_000)
    return page.evaluate(
        """() => [window.__firstRow,
                  performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd]"""
    )


def _stored_envelopes(page) -> int:
    return page.evaluate(
        """() => new Promise((resolve) => {
            const open = indexedDB.open('estafette');
            open.onsuccess = () => {
                const count = open.result.transaction('envelopes').objectStore('envelopes').count();
                count.onsuccess = () => { resolve(count.result); open.result.close(); };
            };
        })"""
    )


def _wait_stored(page, total: int) -> int:
    """Until the background sync has put every envelope into IndexedDB (or 10 minutes)."""
    deadline = time.monotonic() + 600
    while (stored := _stored_envelopes(page)) < total and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    return stored


def _measure(base: str, token: str, mailbox: str, runs: int, rate: float, total: int) -> dict:
    url = f"{base}/#/m/{mailbox}"
    cold, warm, floor, js_sizes = [], [], [], []
    stored = 0
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            for _ in range(runs):
                context = browser.new_context(viewport={"width": 390, "height": 844})
                page = _throttled_page(context, rate)
                _sign_in_device(page, base, token)
                responses: list = []

                def collect(response, kept=responses) -> None:
                    kept.append(response)

                page.on("response", collect)
                cold.append(_first_row_ms(page, url)[0])
                page.remove_listener("response", collect)
                scripts = [r.body() for r in responses if r.request.resource_type == "script"]
                js_sizes.append(sum(len(gzip.compress(body, 9)) for body in scripts))
                # The background sync fills IndexedDB; the next navigations start from it.
                stored = _wait_stored(page, total)
                for _ in range(3):
                    first_row, shell = _first_row_ms(page, url)
                    warm.append(first_row)
                    floor.append(shell)
                context.close()
        finally:
            browser.close()
    shell = statistics.median(floor)
    return {
        "cold_over_floor": round(statistics.median(cold) / shell, 2),
        "warm_over_floor": round(statistics.median(warm) / shell, 2),
        "cold_ms": round(statistics.median(cold), 1),
        "warm_ms": round(statistics.median(warm), 1),
        "floor_shell_dom_ready_ms": round(statistics.median(floor), 1),
        "cold_runs_ms": [round(v, 1) for v in cold],
        "warm_runs_ms": [round(v, 1) for v in warm],
        "shell_js_gzip_bytes": max(js_sizes),
        "stored_envelopes": stored,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envelopes", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpu-throttle", type=float, default=4.0)
    args = parser.parse_args()
    try:
        require_chromium()
    except ChromiumUnavailable as exc:
        raise SystemExit(str(exc)) from exc

    database = ScratchDatabase("web")
    url = database.url
    port = free_port()
    env = {
        **gateway_env(url),
        "ESTAFETTE_BIND": f"127.0.0.1:{port}",
        "ESTAFETTE_WORKERS": "2",
        "ESTAFETTE_VAR_DIR": f"/tmp/{database.name}",
    }
    server = None
    try:
        plan = _setup(env, 3)
        _load_envelopes(url, plan["boxes"], [args.envelopes, 100, 100])
        server = start_gunicorn(env, port)
        _box_pk, mailbox, _folder = plan["boxes"][0]
        result = _measure(
            f"http://127.0.0.1:{port}",
            plan["tokens"][0],
            mailbox,
            args.runs,
            args.cpu_throttle,
            args.envelopes,  # the other two mailboxes are other users'
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        database.drop()
    print(
        json.dumps(
            {
                "envelopes": args.envelopes,
                "cpu_throttle": args.cpu_throttle,
                **result,
                "targets": {"cold_ms": 1000, "warm_ms": 300, "shell_js_gzip_bytes": 150 * 1024},
            }
        )
    )


if __name__ == "__main__":
    main()
