"""The outcome of the last `audit verify`, kept where the api's /metrics can read it.

A full verify walks every record: too slow for a scrape. The periodic job (systemd's
estafette-audit-verify.timer) runs it and leaves its verdict here; the api exports it as
`estafette_audit_chain_verified` and `estafette_audit_verify_timestamp_seconds`, and the
alert fires on a broken chain or on a verdict that has gone stale.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "audit-verify.json"


@dataclass(frozen=True)
class VerifyStatus:
    ok: bool
    records: int
    at: float  # Unix time the verify finished


def status_path(var_dir: Path) -> Path:
    return var_dir / FILE_NAME


def write_status(var_dir: Path, *, ok: bool, records: int) -> None:
    """Replace the verdict atomically: a scrape never reads half a file."""
    var_dir.mkdir(parents=True, exist_ok=True)
    path = status_path(var_dir)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps({"ok": ok, "records": records, "at": time.time()}))
    os.replace(partial, path)


def read_status(var_dir: Path) -> VerifyStatus | None:
    """The last verdict, or None if no verify has run here (or its file is unreadable)."""
    try:
        data = json.loads(status_path(var_dir).read_text())
        return VerifyStatus(bool(data["ok"]), int(data["records"]), float(data["at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
