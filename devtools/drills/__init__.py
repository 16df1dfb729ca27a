"""Fault drills' harness: the operator's processes on a database and a local FCM, shared by
tests/drills and bench/faults.py."""
