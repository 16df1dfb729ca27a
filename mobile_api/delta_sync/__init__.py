"""GET /sync: what changed across the user's mailboxes since an opaque state."""
