"""Certificate revocation lists: the one place that reads, judges and fetches CRLs.

Revocation fails closed (security audit, issue 13): a certificate is accepted only when a
CRL from its issuer is at hand, correctly signed and current. CRLs come from the files
named in `ESTAFETTE_CRL` and from `<var dir>/crl/`, where `flask crl refresh` drops the
lists it downloads (atomically, so a reader never sees half a file).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

log = logging.getLogger("estafette.crl")

CRL_DIR_NAME = "crl"
# What nginx's `ssl_crl` reads: every CRL we hold, concatenated as PEM.
COMBINED_NAME = "all-crls.pem"
DOWNLOAD_TIMEOUT = 30.0
MAX_CRL_BYTES = 50 * 1024 * 1024


class CrlError(Exception):
    """A CRL could not be fetched or is not a CRL; the message names the source, not data."""


def crl_dir(var_dir: Path) -> Path:
    return var_dir / CRL_DIR_NAME


def parse_crl(data: bytes) -> x509.CertificateRevocationList:
    """PEM or DER, as the CAs publish them; ValueError if it is neither."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def crl_files(configured: Iterable[Path], var_dir: Path) -> list[Path]:
    """The configured files, then what the refresh job downloaded (not the combined file)."""
    files = list(configured)
    directory = crl_dir(var_dir)
    if directory.is_dir():
        files.extend(sorted(p for p in directory.glob("*.crl") if p.is_file()))
    return files


def load_crls(paths: Iterable[Path]) -> list[x509.CertificateRevocationList]:
    """Every readable CRL among `paths`. A missing or broken file is skipped and logged:
    the certificates it covered then have no CRL, so they are refused (fail closed)."""
    crls = []
    for path in paths:
        try:
            crls.append(parse_crl(path.read_bytes()))
        except (OSError, ValueError) as exc:
            log.warning("CRL file %s is unusable: %s", path, type(exc).__name__)
    return crls


@dataclass(frozen=True)
class RevocationStatus:
    """`good`, `revoked` or `unknown` (no valid, current CRL from the issuer)."""

    status: str
    reason: str | None = None


def check(
    certificate: x509.Certificate,
    issuer: x509.Certificate,
    crls: Iterable[x509.CertificateRevocationList],
    *,
    now: datetime | None = None,
) -> RevocationStatus:
    """Look `certificate` up in the CRLs its `issuer` signed and that are current at `now`.

    Only a CRL named for the issuer, signed by the issuer's key, issued before `now` and
    whose nextUpdate is still ahead counts; with none, the answer is `unknown`.
    """
    now = now or datetime.now(UTC)
    usable = []
    rejected = "no CRL from the issuer"
    for crl in crls:
        if crl.issuer != issuer.subject:
            continue
        if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            rejected = "a CRL from the issuer has an invalid signature"
            continue
        if crl.next_update_utc is None or crl.next_update_utc <= now:
            rejected = "the issuer's CRL is past its nextUpdate"
            continue
        if crl.last_update_utc > now:
            rejected = "the issuer's CRL is not valid yet"
            continue
        usable.append(crl)
    if not usable:
        return RevocationStatus("unknown", rejected)
    for crl in usable:
        if crl.get_revoked_certificate_by_serial_number(certificate.serial_number) is not None:
            return RevocationStatus("revoked")
    return RevocationStatus("good")


def distribution_points(certificates: Iterable[x509.Certificate]) -> list[str]:
    """The http(s) CRL distribution points the certificates name (LDAP ones are left out)."""
    urls: list[str] = []
    for certificate in certificates:
        try:
            points = certificate.extensions.get_extension_for_class(
                x509.CRLDistributionPoints
            ).value
        except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
            continue
        for point in points:
            for name in point.full_name or []:
                if isinstance(name, x509.UniformResourceIdentifier) and name.value.startswith(
                    ("http://", "https://")
                ):
                    urls.append(name.value)
    return list(dict.fromkeys(urls))


def _name_for(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:24] + ".crl"


def _write_atomically(path: Path, data: bytes) -> None:
    """Write beside the target, then rename over it: readers see the old or the new file."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".incoming-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # CRLs are public; nginx's workers must read them
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def download(url: str, *, timeout: float = DOWNLOAD_TIMEOUT) -> x509.CertificateRevocationList:
    """Fetch one CRL; anything that is not a CRL is an error (never written to disk)."""
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            response.raise_for_status()
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MAX_CRL_BYTES:
                    break
    except httpx.HTTPError as exc:
        raise CrlError(f"{url}: {type(exc).__name__}") from exc
    if len(data) > MAX_CRL_BYTES:
        raise CrlError(f"{url}: larger than {MAX_CRL_BYTES} bytes")
    try:
        return parse_crl(bytes(data))
    except ValueError as exc:
        raise CrlError(f"{url}: not a CRL") from exc


@dataclass(frozen=True)
class RefreshResult:
    written: tuple[str, ...]
    failed: tuple[str, ...]


def refresh(
    urls: Iterable[str],
    var_dir: Path,
    *,
    configured: Iterable[Path] = (),
) -> RefreshResult:
    """Download every CRL into `<var dir>/crl/` and rebuild the combined file for nginx.

    A failed download leaves the previous copy in place: it keeps serving until its own
    nextUpdate, after which the certificates it covers are refused.
    """
    directory = crl_dir(var_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written, failed = [], []
    for url in dict.fromkeys(urls):
        try:
            crl = download(url)
        except CrlError as exc:
            log.error("CRL refresh failed: %s", exc)
            failed.append(url)
            continue
        _write_atomically(directory / _name_for(url), crl.public_bytes(Encoding.PEM))
        written.append(url)
    combined = b"".join(
        crl.public_bytes(Encoding.PEM) for crl in load_crls(crl_files(configured, var_dir))
    )
    _write_atomically(directory / COMBINED_NAME, combined)
    return RefreshResult(tuple(written), tuple(failed))
