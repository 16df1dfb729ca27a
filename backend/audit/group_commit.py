"""Group commit: the threads of a process hand their appends to one writer at a time.

The first caller to find no write under way becomes the leader: it takes everything queued
(its own items and those of callers that arrived meanwhile), writes them as one batch, and
wakes the others. A caller returns only once the batch holding its items has been written
(committed), so nothing is acknowledged before it is durable. There is no timer: a batch is
whatever arrived while the previous one was being written, as in PostgreSQL's own WAL
group commit, so a lone caller waits for nothing but its own write.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Ticket:
    items: list[Any]
    done: bool = False
    result: Any = None
    error: BaseException | None = None
    waiting: threading.Event = field(default_factory=threading.Event)


class GroupCommit(Generic[T, R]):
    """Batches `submit`ted items into calls of `write(items)`, one at a time per process."""

    def __init__(self, write: Callable[[list[T]], R]) -> None:
        self._write = write
        self._reset()

    def _reset(self) -> None:
        # A forked child (gunicorn workers) starts with its own, empty, unlocked queue.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._queue: list[_Ticket] = []
        self._writing = False

    def submit(self, items: list[T]) -> R:
        """Write `items` (in order, together) and return the result of their batch's write.

        Raises what the batch's write raised: none of its items can be taken as written.
        """
        if self._pid != os.getpid():
            self._reset()
        ticket = _Ticket(list(items))
        with self._lock:
            self._queue.append(ticket)
            lead = not self._writing
            if lead:
                self._writing = True
        if not lead:
            ticket.waiting.wait()
            if ticket.done:
                return self._outcome(ticket)
            # Woken to lead: the writer before us left our ticket in the queue.
        self._lead()
        return self._outcome(ticket)

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            result, error = self._write([item for t in batch for item in t.items]), None
        except BaseException as exc:  # every caller of the batch must learn of it
            result, error = None, exc
        with self._lock:
            for ticket in batch:
                ticket.done, ticket.result, ticket.error = True, result, error
            if self._queue:  # arrived during the write: the first of them leads next
                self._queue[0].waiting.set()
            else:
                self._writing = False
        for ticket in batch:
            ticket.waiting.set()

    @staticmethod
    def _outcome(ticket: _Ticket) -> Any:
        if ticket.error is not None:
            raise ticket.error
        return ticket.result
