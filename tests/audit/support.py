"""What the audit specifications share: a trail with some ordinary records in it."""

from __future__ import annotations

from typing import Any

from backend.audit.trail import Actor


def write_reads(services: Any, n: int) -> list[int]:
    """`n` message reads by one doctor's phone, through the one audit writer; their ids."""
    return [
        services.audit.record(
            "message.read",
            actor=Actor("usr_reader", "dev_reader", "10.0.0.7"),
            target_type="message",
            target=f"msg_{i}",
            mailbox="mbx_cardio",
        ).id
        for i in range(n)
    ]
