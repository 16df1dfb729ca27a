"""TLS contexts for the operator's servers: TLS 1.2 at least, verified against the CA bundle.

MSSanté accepts only IGC Santé as CA for its servers; `ESTAFETTE_CA_BUNDLE` names that
bundle. A certificate that does not verify is an error, never a silent downgrade.

Revocation fails closed: OpenSSL checks the server certificate against its issuer's CRL
(`VERIFY_CRL_CHECK_LEAF`) and refuses the handshake when that CRL is missing, expired or
badly signed, or lists the certificate. CRLs come from the CA bundle file itself (PEM CRL
blocks after the certificates), `ESTAFETTE_CRL` and what `flask crl refresh` downloaded.
(Python's ssl module cannot read a stapled OCSP response, so CRLs are the one mechanism.)
"""

from __future__ import annotations

import os
import ssl
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from backend.certificates import load_p12

_revocation_sources: tuple[Path, ...] = ()
_revocation_dir: Path | None = None
_sources_lock = threading.Lock()


def configure_revocation(crl_files: Iterable[Path], var_dir: Path) -> None:
    """Name where server CRLs live; called once per process by create_app.

    Why process-wide: every IMAP and SMTP connection, whoever opens it, must check
    revocation the same way, without each caller carrying the CRL list along.
    """
    global _revocation_sources, _revocation_dir
    with _sources_lock:
        _revocation_sources = tuple(crl_files)
        _revocation_dir = var_dir


def revocation_files() -> list[Path]:
    """The CRL files server certificates are checked against (beside the CA bundle)."""
    from backend.crl import crl_files

    with _sources_lock:
        configured, var_dir = _revocation_sources, _revocation_dir
    return crl_files(configured, var_dir) if var_dir is not None else list(configured)


def trust_version(ca_bundle: Path | None) -> tuple[tuple[str, int], ...]:
    """Names and mtimes of the bundle and CRLs: a refreshed CRL makes a new context."""
    paths = ([ca_bundle] if ca_bundle else []) + revocation_files()
    version = []
    for path in paths:
        try:
            version.append((str(path), path.stat().st_mtime_ns))
        except OSError:
            version.append((str(path), -1))
    return tuple(version)


def client_context(
    ca_bundle: Path | None,
    p12: bytes | None = None,
    p12_password: str | None = None,
    *,
    crls: Sequence[Path] | None = None,
) -> ssl.SSLContext:
    """A verifying client context that requires a current CRL for the server certificate.

    `crls` defaults to the configured ones; with `p12`, the context also presents that
    client certificate.
    """
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    _load_crls(context, revocation_files() if crls is None else crls)
    if p12 is not None:
        _load_client_certificate(context, p12, p12_password)
    return context


def _load_crls(context: ssl.SSLContext, paths: Iterable[Path]) -> None:
    """ssl loads CRLs only from PEM files: re-encode what we read (PEM or DER) into one."""
    from backend.crl import load_crls

    pem = b"".join(crl.public_bytes(Encoding.PEM) for crl in load_crls(paths))
    if not pem:
        return
    fd, path = tempfile.mkstemp(prefix="estafette-crl-", suffix=".pem")
    try:
        os.write(fd, pem)
        os.close(fd)
        context.load_verify_locations(cafile=path)
    finally:
        os.unlink(path)


def _load_client_certificate(context: ssl.SSLContext, p12: bytes, password: str | None) -> None:
    """ssl only loads certificates from files: write a 0600 temp file, load, delete at once."""
    key, cert, chain = load_p12(p12, password)  # P12Unusable is a ValueError
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
