"""The floor of bench/api_latency.py: Flask itself, serving a constant page of 50 envelopes.

No database, no auth, no audit: what any call costs under the same gunicorn configuration
(`gunicorn -c infra/gunicorn.conf.py bench.floor_app:app`). Every path answers the same
page, serialized per request with Flask's own JSON, as a minimal Flask app does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, jsonify

PAGE = 50


def envelope(n: int) -> dict[str, Any]:
    """One envelope as GET /mailboxes/{id}/messages shows it, with realistic values."""
    return {
        "id": f"msg_{n:022d}",
        "mailbox_id": "mbx_0000000000000000000001",
        "folder": "INBOX",
        "subject": f"Compte rendu d'hospitalisation {n}",
        "from": {"name": f"Dr Exp {n}", "address": f"exp{n}@ch.mssante.fr"},
        "to": [{"name": None, "address": "dr@chu.mssante.fr"}],
        "cc": [],
        "date": (datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=17 * n)).isoformat(),
        "seen": n % 3 != 0,
        "flagged": n % 11 == 0,
        "answered": False,
        "has_attachments": n % 4 == 0,
        "size": 20_000 + n,
        "mdn_requested": False,
        "urgent": False,
        "malformed": False,
        "patient": {"ins": f"1{n:012d}", "name": "DUPONT Jeanne", "birth_date": "1950-01-01"},
        "receipts": [],
    }


PAGE_BODY = {"items": [envelope(n) for n in range(PAGE)], "next": "A" * 120}

app = Flask(__name__)


@app.get("/", defaults={"path": ""})
@app.get("/<path:path>")
def page(path: str) -> Any:
    return jsonify(PAGE_BODY)
