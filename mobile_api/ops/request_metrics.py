"""Counts every api answer by method, route pattern and status, and times it.

The route is the rule (`/api/v1/messages/<message_id>`), never the path: a path carries
ids and a query carries cursors, and neither belongs in a label. The api 5xx alert reads
`estafette_api_responses_total`.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request

from backend.metrics import API_LATENCY, API_RESPONSES


def _start() -> None:
    g.metrics_started = time.perf_counter()


def _count(response: Response) -> Response:
    rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
    API_RESPONSES.labels(request.method, rule, str(response.status_code)).inc()
    started = g.get("metrics_started")
    if started is not None:
        API_LATENCY.observe(time.perf_counter() - started)
    return response


def init_request_metrics(app: Flask) -> None:
    """First of the before-request hooks, so a call refused early (429, 401) is timed too."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_count)
