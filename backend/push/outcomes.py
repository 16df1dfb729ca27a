"""What became of one push: the dispatcher's whole vocabulary for FCM answers.

The kind carries the policy (Sygnal-style): `prune` drops the device's token, `retry`
comes back later (after `retry_after` when FCM said so), `failed` is reported and
counted, never retried forever (DESIGN.md, "nothing is lost").
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum


class OutcomeKind(StrEnum):
    OK = "ok"
    PRUNE = "prune"
    RETRY = "retry"
    FAILED = "failed"


# What `GET /devices` shows as `last_push_status` after each kind of answer.
DEVICE_STATUS = {
    OutcomeKind.OK: "ok",
    OutcomeKind.RETRY: "retrying",
    OutcomeKind.PRUNE: "pruned",
    OutcomeKind.FAILED: "failed",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one message; `code` is FCM's error code (e.g. `UNREGISTERED`) for metrics."""

    kind: OutcomeKind
    code: str | None = None
    retry_after: float | None = None
    message_id: str | None = None

    @classmethod
    def ok(cls, message_id: str | None = None) -> Outcome:
        return cls(OutcomeKind.OK, message_id=message_id)

    @classmethod
    def prune(cls, code: str) -> Outcome:
        """The token is dead: the device must register a new one."""
        return cls(OutcomeKind.PRUNE, code)

    @classmethod
    def retry(cls, code: str, retry_after: float | None = None) -> Outcome:
        """A transient refusal; `retry_after` is FCM's Retry-After in seconds, if it gave one."""
        return cls(OutcomeKind.RETRY, code, retry_after)

    @classmethod
    def failed(cls, code: str) -> Outcome:
        """A permanent failure that is not the token's fault (configuration, bad payload)."""
        return cls(OutcomeKind.FAILED, code)


def log_summary(log: logging.Logger, provider: str, outcomes: list[Outcome]) -> None:
    """One content-free line per batch: counts by outcome and provider code, never a token
    nor an endpoint (both name a user's device)."""
    problems = Counter((o.kind.value, o.code) for o in outcomes if o.kind is not OutcomeKind.OK)
    if problems:
        detail = " ".join(f"{kind}:{code}={n}" for (kind, code), n in sorted(problems.items()))
        log.warning("%s sent %d, not delivered: %s", provider, len(outcomes), detail)
    else:
        log.debug("%s sent %d, all accepted", provider, len(outcomes))
