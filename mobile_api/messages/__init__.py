"""Opening, downloading, flagging and deleting one message (API.md, "Mailboxes and messages")."""
