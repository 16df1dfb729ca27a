"""One run of Debian's `wrk` with one of our Lua scripts, for the benches that load the api.

The scripts share bench/wrk_open_loop.lua (threads, the open-loop schedule, the JSON
summary), found through LUA_PATH. One connection per wrk thread, so each thread's answers
come back in the order of its calls.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


def run_wrk(
    script: Path,
    port: int,
    env: dict[str, str],
    *,
    connections: int,
    seconds: float,
    rate: float | None = None,
    errors_fail: bool = True,
) -> dict[str, Any]:
    """The script's one-line JSON summary. `rate`: total calls/s, open loop; None: closed.
    `errors_fail`: a call that did not answer 200, or a socket error, ends the bench
    (otherwise the caller reports them)."""
    run_env = {**os.environ, **env, "LUA_PATH": f"{BENCH}/?.lua;;"}
    if rate is not None:
        run_env["BENCH_RATE"] = str(rate / connections)
    result = subprocess.run(
        [
            "wrk",
            f"-t{connections}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            *("--timeout", "10s", "-s", str(script)),
            f"http://127.0.0.1:{port}",
        ],
        env=run_env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(next(x for x in result.stdout.splitlines() if x.startswith("{")))
    if errors_fail and (found["non200"] or found["socket_errors"]):
        raise SystemExit(f"wrk with {script.name}: {found}")
    return found
