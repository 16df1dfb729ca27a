"""The mailbox directory: MSSanté mailboxes, how to reach them, and who may use them."""
