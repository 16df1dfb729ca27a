"""Mailboxes: the MSSanté mailboxes and who may use them (`registry`), the envelope
cache's listings (`listings`) and the change log behind GET /sync (`change_log`)."""
