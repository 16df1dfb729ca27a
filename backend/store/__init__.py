"""The store: what sync and the api's actions write into the mail cache, with the push
outbox in the same transaction (IMAP → sync → store → outbox → push)."""
