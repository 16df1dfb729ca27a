"""CPS card sign-in: the certificate nginx received, checked again here before we trust it.

nginx terminates mTLS and passes the card's certificate. We do not take its word for it:
the chain is rebuilt against `ESTAFETTE_CARD_CA_BUNDLE` (IGC Santé's personal-card CAs,
kept apart from the servers' CAs), validity dates, the clientAuth usage and the CPS
certificate policies are checked, and revocation is required: without a valid, current
CRL from the card's issuer the card is refused, never waved through. The professional's
national identifier (IdNat_PS: RPPS or ADELI based) is read from the subject.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from backend import crl as revocation


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


def has_policy(certificate: x509.Certificate, accepted: tuple[str, ...]) -> bool:
    """True if one of the card's policies is an accepted OID or lies under one (an arc)."""
    try:
        policies = certificate.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        return False  # absent or malformed: not a CPS certificate
    for info in policies:
        oid = info.policy_identifier.dotted_string
        if any(oid == wanted or oid.startswith(wanted + ".") for wanted in accepted):
            return True
    return False


def _has_client_auth(certificate: x509.Certificate) -> bool:
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH in usages


def verify_card(
    certificate: x509.Certificate,
    *,
    trusted: list[x509.Certificate],
    crls: list[x509.CertificateRevocationList],
    policies: tuple[str, ...],
    now: datetime | None = None,
) -> VerifiedCard:
    """Check chain, dates, usage, policy and revocation; raise CardRejected otherwise."""
    now = now or datetime.now(UTC)
    if not trusted:
        raise CardRejected("no_trust_anchor", "No CA bundle is configured for CPS cards")
    if certificate.not_valid_after_utc < now:
        raise CardRejected("expired", "The card's certificate has expired")
    if certificate.not_valid_before_utc > now:
        raise CardRejected("not_yet_valid", "The card's certificate is not valid yet")
    if not _has_client_auth(certificate):
        raise CardRejected("wrong_usage", "The certificate is not meant for authentication")
    if not has_policy(certificate, policies):
        raise CardRejected("wrong_policy", "The certificate is not a CPS authentication one")
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
    if len(verified.chain) < 2:  # the card itself in the store is no anchor
        raise CardRejected("untrusted", "The card was not issued by a trusted authority")
    status = revocation.check(certificate, verified.chain[1], crls, now=now)
    if status.status == "revoked":
        raise CardRejected("revoked", "The card's certificate has been revoked")
    if status.status != "good":
        raise CardRejected(
            "revocation_unknown",
            "The card's revocation status cannot be checked: no current revocation list "
            "from its authority",
        )
    return VerifiedCard(
        professional_id(certificate), certificate.serial_number, certificate.not_valid_after_utc
    )
