"""Sending from the phone: new messages, replies and read receipts (API.md)."""
