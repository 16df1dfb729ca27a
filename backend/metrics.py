"""Every Prometheus metric, in one place. Labels are codes and states, never addresses or content.

Names follow `estafette_<component>_<what>` (Sygnal's convention).
"""

from prometheus_client import Counter, Gauge, Histogram

SYNC_CONNECTED = Gauge("estafette_sync_connected_mailboxes", "Mailboxes currently in IDLE")
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

PUSH_QUEUE_DEPTH = Gauge("estafette_push_queue_depth", "Outbox events not yet dispatched")
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
