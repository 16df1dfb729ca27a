"""Joining senders' futures: the dispatcher waits on one future per batch, whatever sent it.

A batch may go out through several senders at once (FCM for the apps, Web Push for the
browsers), each answering with a future of its own. `gather` joins them in order and
hands the first failure on, so the dispatcher's one wait sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from threading import Lock
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def gather(futures: Sequence[Future[T]]) -> Future[list[T]]:
    """One future of every result, in order; the first exception if any fails."""
    joined: Future[list[T]] = Future()
    if not futures:
        joined.set_result([])
        return joined
    remaining = [len(futures)]
    lock = Lock()

    def done(future: Future[T]) -> None:
        if future.exception() is not None:
            with lock:
                if not joined.done():
                    joined.set_exception(future.exception())
            return
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0 and not joined.done():
                joined.set_result([f.result() for f in futures])

    for future in futures:
        future.add_done_callback(done)
    return joined


def then(future: Future[T], change: Callable[[T], R]) -> Future[R]:
    """A future of `change(result)`; an exception, in the source or in `change`, carries on."""
    changed: Future[R] = Future()

    def done(source: Future[T]) -> None:
        try:
            changed.set_result(change(source.result()))
        except BaseException as exc:  # handed to whoever waits on `changed`
            changed.set_exception(exc)

    future.add_done_callback(done)
    return changed
