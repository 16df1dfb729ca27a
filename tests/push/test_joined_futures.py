"""The dispatcher's one wait over several senders: results in order, a failure handed on."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from backend.push.futures import gather, then


def _finished(value: object) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


def test_gather_keeps_the_order_of_the_futures_not_of_their_completion() -> None:
    first, second = Future(), Future()
    joined = gather([first, second])
    second.set_result("b")
    assert not joined.done()
    first.set_result("a")
    assert joined.result(timeout=1) == ["a", "b"]


def test_gather_of_nothing_is_already_done() -> None:
    assert gather([]).result(timeout=1) == []


def test_gather_hands_on_the_first_failure_without_waiting_for_the_rest() -> None:
    failing, pending = Future(), Future()
    joined = gather([pending, failing])
    failing.set_exception(ConnectionError("push service unreachable"))
    with pytest.raises(ConnectionError):
        joined.result(timeout=1)
    pending.set_result("late")  # a late result does not overwrite the failure
    with pytest.raises(ConnectionError):
        joined.result(timeout=1)


def test_then_applies_the_change_and_carries_its_exception() -> None:
    assert then(_finished(2), lambda n: n * 10).result(timeout=1) == 20

    def refuse(_value: object) -> object:
        raise ValueError("no")

    with pytest.raises(ValueError):
        then(_finished(1), refuse).result(timeout=1)
