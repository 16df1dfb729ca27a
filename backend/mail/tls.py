"""TLS contexts for the operator's servers: TLS 1.2 at least, verified against the CA bundle.

MSSanté accepts only IGC Santé as CA for its servers; `ESTAFETTE_CA_BUNDLE` names that
bundle. A certificate that does not verify is an error, never a silent downgrade.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)


def client_context(
    ca_bundle: Path | None, p12: bytes | None = None, p12_password: str | None = None
) -> ssl.SSLContext:
    """A verifying client context; with `p12`, it also presents that client certificate."""
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if p12 is not None:
        _load_p12(context, p12, p12_password)
    return context


def _load_p12(context: ssl.SSLContext, p12: bytes, password: str | None) -> None:
    """ssl only loads certificates from files: write a 0600 temp file, load, delete at once."""
    key, cert, chain = pkcs12.load_key_and_certificates(
        p12, password.encode() if password else None
    )
    if key is None or cert is None:
        raise ValueError("the .p12 holds no private key and certificate")
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    pem += cert.public_bytes(Encoding.PEM)
    for extra in chain or []:
        pem += extra.public_bytes(Encoding.PEM)
    fd, path = tempfile.mkstemp(prefix="estafette-p12-", suffix=".pem")
    try:
        os.write(fd, pem)
        os.close(fd)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)
