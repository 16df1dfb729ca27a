"""CPS card sign-in: the certificate nginx received, checked again here before we trust it.

nginx terminates mTLS and passes the card's certificate. We do not take its word for it:
the chain is rebuilt against `ESTAFETTE_CA_BUNDLE` (IGC Santé), validity dates are checked,
and the certificate is looked up in the configured CRLs. The professional's national
identifier (IdNat_PS: RPPS or ADELI based) is read from the subject and mapped to a user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)


class CardRejected(Exception):
    """The card cannot open a session; `reason` is a stable code for the audit trail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class VerifiedCard:
    professional_id: str
    serial_number: int
    not_after: datetime


_ID_IN_CN = re.compile(r"^(\d{9,12})\b")
# Web PKI rules, except that a card's certificate names a person, not a host: it need not
# carry a subjectAltName.
_CARD_POLICY = ExtensionPolicy.webpki_defaults_ee().may_be_present(
    x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
)


def load_certificates(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def load_crls(paths: list[Path]) -> list[x509.CertificateRevocationList]:
    """PEM or DER CRLs, as IGC Santé publishes them."""
    crls = []
    for path in paths:
        data = path.read_bytes()
        loader = x509.load_pem_x509_crl if b"-----BEGIN" in data else x509.load_der_x509_crl
        crls.append(loader(data))
    return crls


def parse_forwarded_certificate(header: str) -> x509.Certificate:
    """nginx's `$ssl_client_escaped_cert`: a URL-encoded PEM certificate."""
    try:
        return x509.load_pem_x509_certificate(unquote(header).encode())
    except ValueError as exc:
        raise CardRejected("unreadable", "The forwarded certificate cannot be read") from exc


def professional_id(certificate: x509.Certificate) -> str:
    """The IdNat_PS: the subject's serialNumber if present, else the digits leading the CN."""
    subject = certificate.subject
    for attribute in subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
        if str(attribute.value).strip():
            return str(attribute.value).strip()
    for attribute in subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        match = _ID_IN_CN.match(str(attribute.value))
        if match:
            return match.group(1)
    raise CardRejected("no_identifier", "The certificate carries no professional identifier")


def verify_card(
    certificate: x509.Certificate,
    *,
    trusted: list[x509.Certificate],
    crls: list[x509.CertificateRevocationList],
    now: datetime | None = None,
) -> VerifiedCard:
    """Check chain, dates and revocation; raise CardRejected with the reason otherwise."""
    now = now or datetime.now(UTC)
    if not trusted:
        raise CardRejected("no_trust_anchor", "No CA bundle is configured for CPS cards")
    if certificate.not_valid_after_utc < now:
        raise CardRejected("expired", "The card's certificate has expired")
    if certificate.not_valid_before_utc > now:
        raise CardRejected("not_yet_valid", "The card's certificate is not valid yet")
    intermediates = [c for c in trusted if c.subject != c.issuer]
    roots = [c for c in trusted if c.subject == c.issuer]
    verifier = (
        PolicyBuilder()
        .store(Store(roots or trusted))
        .time(now)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_CARD_POLICY)
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(certificate, intermediates)
    except VerificationError as exc:
        raise CardRejected("untrusted", "The card was not issued by a trusted authority") from exc
    issuer = verified.chain[1] if len(verified.chain) > 1 else None
    _check_revocation(certificate, issuer, crls)
    return VerifiedCard(
        professional_id(certificate), certificate.serial_number, certificate.not_valid_after_utc
    )


def _check_revocation(
    certificate: x509.Certificate,
    issuer: x509.Certificate | None,
    crls: list[x509.CertificateRevocationList],
) -> None:
    now = datetime.now(UTC)
    for crl in crls:
        if crl.issuer != certificate.issuer:
            continue
        if issuer is not None and not crl.is_signature_valid(issuer.public_key()):
            raise CardRejected("crl_invalid", "The revocation list's signature is not valid")
        if crl.next_update_utc is not None and crl.next_update_utc < now:
            # A stale list could hide a revocation: refuse rather than guess.
            raise CardRejected("crl_stale", "The revocation list is out of date")
        if crl.get_revoked_certificate_by_serial_number(certificate.serial_number) is not None:
            raise CardRejected("revoked", "The card's certificate has been revoked")
