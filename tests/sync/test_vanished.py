"""VANISHED responses (RFC 7162 §3.2.10): which cached UIDs the server says are gone."""

from __future__ import annotations

from backend.mail.imap import vanished_uids


def test_single_uids_and_ranges_of_live_and_earlier_responses_are_merged_in_order() -> None:
    responses = [b"(EARLIER) 41,43:45", b"7", b"44:42,50"]
    assert vanished_uids(responses, up_to=100) == [7, 41, 42, 43, 44, 45, 50]


def test_uids_beyond_the_ones_we_hold_are_not_expanded() -> None:
    assert vanished_uids([b"(EARLIER) 1:4294967295"], up_to=3) == [1, 2, 3]
    assert vanished_uids([b"90:95"], up_to=10) == []


def test_no_response_means_nothing_vanished() -> None:
    assert vanished_uids([], up_to=10) == []
