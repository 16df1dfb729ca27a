"""The trail is append-only for the application: the retention purge is the one code path
that deletes records, and nothing updates them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WRITES = re.compile(
    r"(delete|update)\(\s*AuditRecord\b|(DELETE\s+FROM|UPDATE)\s+audit_records\b|"
    r"\.delete\(\s*(record|entry|row)\b",
    re.IGNORECASE,
)


def test_only_the_retention_purge_deletes_audit_records_and_nothing_updates_them() -> None:
    offenders = {}
    for package in ("backend", "mobile_api"):
        for path in (ROOT / package).rglob("*.py"):
            hits = [m.group(0) for m in WRITES.finditer(path.read_text())]
            if hits:
                offenders[str(path.relative_to(ROOT))] = hits
    assert offenders == {"backend/audit/retention.py": ["delete(AuditRecord"]}
