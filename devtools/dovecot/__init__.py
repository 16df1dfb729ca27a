"""A real, throwaway Dovecot for tests, benchmarks and the `make run` demo: the server
(`server`), its users (`users`) and the SMTP relay behind its submission service
(`relay`)."""

from devtools.dovecot.relay import RelayedMessage
from devtools.dovecot.server import (
    DeliveryError,
    DovecotError,
    DovecotServer,
    _process_group_members,
    pick_loopback_host,
)
from devtools.dovecot.users import hash_password

__all__ = [
    "DeliveryError",
    "DovecotError",
    "DovecotServer",
    "RelayedMessage",
    "_process_group_members",
    "hash_password",
    "pick_loopback_host",
]
