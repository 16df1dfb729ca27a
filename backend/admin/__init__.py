"""Central administration: users, mailboxes of the four kinds, delegation and devices.

Service functions take the session as `db=` and return what the audit record needs
(before/after with secrets masked); the API and CLI layers record it.
"""
