"""Every Prometheus metric, in one place. Labels are codes and states, never addresses or content.

Names follow `estafette_<component>_<what>` (Sygnal's convention).
"""

from prometheus_client import Counter, Gauge, Histogram

SYNC_CONNECTED = Gauge(
    "estafette_sync_connected_mailboxes",
    "IDLE connections: mailboxes held connected by the worker",
    multiprocess_mode="livesum",
)
SYNC_RECONNECTS = Counter("estafette_sync_reconnects_total", "Reconnections after a failure")
SYNC_IDLE_EVENTS = Counter("estafette_sync_idle_events_total", "Server notifications in IDLE")
SYNC_IDLE_RENEWALS = Counter(
    "estafette_sync_idle_renewals_total", "IDLE commands renewed before RFC 2177's 29 minutes"
)
SYNC_UNPROCESSABLE = Counter(
    "estafette_sync_unprocessable_messages_total",
    "Messages a sync stage could not process, stored as malformed and skipped",
    ["stage"],
)
SYNC_TRUNCATED_HEADERS = Counter(
    "estafette_sync_truncated_headers_total", "Header blocks cut at the envelope's size limit"
)
SYNC_LAG = Histogram(
    "estafette_sync_lag_seconds",
    "From a server notification to the cache being up to date",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

PUSH_QUEUE_DEPTH = Gauge(
    "estafette_push_queue_depth", "Outbox events not yet dispatched", multiprocess_mode="max"
)
PUSH_SEND_LATENCY = Histogram(
    "estafette_push_send_seconds",
    "One FCM batch, from request to last answer",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PUSH_QUEUE_TO_SEND = Histogram(
    "estafette_push_queue_to_send_seconds",
    "From outbox write to FCM's answer",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PUSH_OUTCOMES = Counter("estafette_push_fcm_outcomes_total", "FCM answers", ["outcome", "code"])
PUSH_PRUNED = Counter(
    "estafette_push_pruned_tokens_total",
    "Dead tokens removed, by FCM error code (STALE_TOKEN: not refreshed for 270 days)",
    ["code"],
)

# -- sync: how fresh each worker keeps its mailboxes ------------------------------------
SYNC_CATCH_UP_AGE = Gauge(
    "estafette_sync_catch_up_age_seconds",
    "Worst case over the worker's held mailboxes: seconds since its last successful catch-up",
    multiprocess_mode="max",
)
SYNC_CATCH_UP_INTERVAL = Histogram(
    "estafette_sync_catch_up_interval_seconds",
    "Seconds between two successful catch-ups of one mailbox (IDLE news, renewal, reconnect)",
    buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200),
)
IMAP_AUTH_FAILURES = Counter(
    "estafette_imap_auth_failures_total", "IMAP logins the mail server refused"
)
TOKEN_REFRESH_FAILURES = Counter(
    "estafette_imap_token_refresh_failures_total",
    "XOAUTH2 access tokens the token endpoint did not give (refused: an operator must act)",
    ["reason"],
)

# -- push: by outcome and platform -------------------------------------------------------
PUSH_SENT = Counter(
    "estafette_push_sent_total",
    "Pushes by outcome (ok, retry, prune, failed, expired) and platform (fcm, webpush)",
    ["outcome", "platform"],
)

# -- api and audit -----------------------------------------------------------------------
API_RESPONSES = Counter(
    "estafette_api_responses_total",
    "Api answers by method, route pattern (never a path with its values) and status",
    ["method", "route", "status"],
)
API_LATENCY = Histogram(
    "estafette_api_request_seconds",
    "One api request, from the first hook to the answer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
AUDIT_WRITE_LATENCY = Histogram(
    "estafette_audit_write_seconds",
    "One audit record appended to the chain (chain lock to commit)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
