"""A throwaway PKI for tests, benchmarks and the demo.

Why: MSSanté only trusts IGC Santé, checks CRLs and authenticates applications
with client certificates. Tests need the same shapes (a CA, server and client
certificates, .p12 bundles, CRLs) without any real secret, so everything here
is generated in memory with `cryptography` and thrown away afterwards.

Typical use::

    ca = make_ca("Estafette Test CA")
    server = ca.issue_server_cert()
    card = ca.issue_client_cert("CN=Dr Alice Martin,serialNumber=899700000001")
    ca.revoke(card)
    ca.write_bundle(tmp / "client-ca.pem", include_crl=True)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
KeyType = Literal["ec", "rsa"]
SubjectLike = str | x509.Name | Mapping[str, str]

# RFC 4514 only defines a handful of short names; health-sector certificates
# (CPS cards, IGC Santé "Organisation" certificates) use a few more.
NAME_ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "commonName": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "GN": NameOID.GIVEN_NAME,
    "givenName": NameOID.GIVEN_NAME,
    "surname": NameOID.SURNAME,
    "title": NameOID.TITLE,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "organizationIdentifier": NameOID.ORGANIZATION_IDENTIFIER,
}

DEFAULT_CA_DAYS = 365
DEFAULT_LEAF_DAYS = 90
# Certificates start a little in the past so that clock skew between the test
# process and the server never makes a fresh certificate "not yet valid".
BACKDATE = dt.timedelta(minutes=5)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_name(subject: SubjectLike) -> x509.Name:
    """Turn "CN=...,serialNumber=..." (or a mapping) into an x509.Name.

    Why: tests describe certificate subjects the way they are printed, including
    attributes RFC 4514 does not name (serialNumber, GN, title...).
    """
    if isinstance(subject, x509.Name):
        return subject
    if isinstance(subject, str):
        if "=" not in subject:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        return x509.Name.from_rfc4514_string(subject, NAME_ATTRIBUTES)
    attributes = []
    for key, value in subject.items():
        try:
            oid = NAME_ATTRIBUTES[key]
        except KeyError:
            raise ValueError(f"unknown name attribute {key!r}") from None
        attributes.append(x509.NameAttribute(oid, value))
    return x509.Name(attributes)


def generate_key(key_type: KeyType = "ec") -> PrivateKey:
    """Make a private key; EC by default because it is instant, RSA for realism."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key type {key_type!r}")


def _key_usage(
    *, ca: bool = False, signing: bool = True, encipherment: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signing,
        content_commitment=False,
        key_encipherment=encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _validity(
    not_before: dt.datetime | None, not_after: dt.datetime | None, days: int
) -> tuple[dt.datetime, dt.datetime]:
    if not_before is None:
        # An explicitly past not_after (an expired card) pulls the start back too.
        start = _now() - BACKDATE
        if not_after is not None and not_after <= start:
            start = not_after - dt.timedelta(days=days)
    else:
        start = not_before
    end = not_after or (start + BACKDATE + dt.timedelta(days=days))
    return start, end


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate with its private key and the chain up to the root."""

    certificate: x509.Certificate
    private_key: PrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def serial_number(self) -> int:
        return self.certificate.serial_number

    @property
    def subject(self) -> x509.Name:
        return self.certificate.subject

    @property
    def common_name(self) -> str:
        names = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else ""

    def cert_pem(self, *, with_chain: bool = False) -> bytes:
        certs = [self.certificate, *(self.chain if with_chain else ())]
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)

    def key_pem(self, password: bytes | None = None) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def write_pem(
        self,
        cert_path: Path,
        key_path: Path | None = None,
        *,
        password: bytes | None = None,
        with_chain: bool = False,
    ) -> tuple[Path, Path]:
        """Write certificate and key (0600) as PEM; key defaults to <cert>.key."""
        cert_path = Path(cert_path)
        key_path = Path(key_path) if key_path else cert_path.with_suffix(".key")
        cert_path.write_bytes(self.cert_pem(with_chain=with_chain))
        _write_private(key_path, self.key_pem(password))
        return cert_path, key_path

    def to_pkcs12(self, password: bytes, *, friendly_name: str | None = None) -> bytes:
        """Export as a password-protected .p12, the way APP mailboxes get theirs."""
        name = (friendly_name or self.common_name or "certificate").encode()
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(10_000)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(password)
        )
        return pkcs12.serialize_key_and_certificates(
            name, self.private_key, self.certificate, list(self.chain) or None, encryption
        )

    def write_pkcs12(
        self, path: Path, password: bytes, *, friendly_name: str | None = None
    ) -> Path:
        path = Path(path)
        _write_private(path, self.to_pkcs12(password, friendly_name=friendly_name))
        return path


def _write_private(path: Path, data: bytes) -> None:
    """Create a secret file already restricted to its owner (no 0644 window)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


@dataclass
class CertificateAuthority:
    """A CA that can issue leaves and sub-CAs, revoke them and publish a CRL."""

    certificate: x509.Certificate
    private_key: PrivateKey
    parent: CertificateAuthority | None = None
    revoked: dict[int, tuple[dt.datetime, x509.ReasonFlags | None]] = field(default_factory=dict)
    crl_number: int = 0

    # -- identity ---------------------------------------------------------

    @property
    def name(self) -> x509.Name:
        return self.certificate.subject

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """This CA and its ancestors, closest first (what a leaf's chain needs)."""
        ancestors = self.parent.chain if self.parent else ()
        return (self.certificate, *ancestors)

    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def write_cert(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.cert_pem())
        return path

    # -- issuing ----------------------------------------------------------

    def _builder(
        self,
        subject: x509.Name,
        public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        not_before: dt.datetime,
        not_after: dt.datetime,
        serial_number: int | None,
    ) -> x509.CertificateBuilder:
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(serial_number or x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
                critical=False,
            )
        )

    def _sign(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        return builder.sign(self.private_key, hashes.SHA256())

    def issue(
        self,
        subject: SubjectLike,
        *,
        extended_usages: Sequence[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[str] = (),
        emails: Iterable[str] = (),
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        days: int = DEFAULT_LEAF_DAYS,
        key_type: KeyType = "ec",
        private_key: PrivateKey | None = None,
        serial_number: int | None = None,
        policies: Iterable[str] = (),
        crl_urls: Iterable[str] = (),
    ) -> IssuedCertificate:
        """Issue any end-entity certificate; the specific helpers below call this.

        `policies` are certificate policy OIDs (a CPS card carries IGC Santé's);
        `crl_urls` become the CRL distribution points.
        """
        key = private_key or generate_key(key_type)
        start, end = _validity(not_before, not_after, days)
        builder = self._builder(parse_name(subject), key.public_key(), start, end, serial_number)
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        is_rsa = isinstance(key, rsa.RSAPrivateKey)
        builder = builder.add_extension(_key_usage(encipherment=is_rsa), critical=True)
        if extended_usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(extended_usages)), False)
        alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        alt_names += [x509.RFC822Name(e) for e in emails]
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), False)
        builder = _add_policies_and_crls(builder, policies, crl_urls)
        return IssuedCertificate(self._sign(builder), key, self.chain)

    def issue_server_cert(
        self,
        common_name: str = "localhost",
        *,
        dns_names: Iterable[str] = ("localhost",),
        ip_addresses: Iterable[str] = ("127.0.0.1", "::1"),
        **kwargs: object,
    ) -> IssuedCertificate:
        """A TLS server certificate; SANs default to localhost and 127.0.0.1."""
        return self.issue(
            common_name,
            extended_usages=(ExtendedKeyUsageOID.SERVER_AUTH,),
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            **kwargs,  # type: ignore[arg-type]
        )

    def issue_client_cert(
        self,
        subject: SubjectLike,
        *,
        emails: Iterable[str] = (),
        **kwargs: object,
    ) -> IssuedCertificate:
        """A TLS client certificate (SASL EXTERNAL, CPS-card-like, APP mailbox)."""
        return self.issue(
            subject,
            extended_usages=(ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION),
            emails=emails,
            **kwargs,  # type: ignore[arg-type]
        )

    def issue_intermediate(
        self,
        common_name: str,
        *,
        organization: str | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        days: int = DEFAULT_CA_DAYS,
        key_type: KeyType = "ec",
        crl_urls: Iterable[str] = (),
    ) -> CertificateAuthority:
        """A sub-CA, because IGC Santé issues cards from intermediates under a root.

        `crl_urls`: where this sub-CA's own revocation (the parent's CRL) is published.
        """
        key = generate_key(key_type)
        start, end = _validity(not_before, not_after, days)
        builder = self._builder(
            _ca_name(common_name, organization), key.public_key(), start, end, None
        )
        builder = _add_policies_and_crls(_add_ca_extensions(builder), (), crl_urls)
        return CertificateAuthority(self._sign(builder), key, parent=self)

    # -- revocation -------------------------------------------------------

    def revoke(
        self,
        certificate: IssuedCertificate | x509.Certificate | int,
        *,
        when: dt.datetime | None = None,
        reason: x509.ReasonFlags | None = x509.ReasonFlags.key_compromise,
    ) -> None:
        """Add a serial to the next CRL (a card reported lost, a key leaked...)."""
        serial = certificate if isinstance(certificate, int) else certificate.serial_number
        self.revoked[serial] = (when or _now(), reason)

    def crl(
        self,
        *,
        last_update: dt.datetime | None = None,
        next_update: dt.datetime | None = None,
    ) -> x509.CertificateRevocationList:
        """Build a fresh signed CRL listing every revoked serial."""
        self.crl_number += 1
        start = last_update or (_now() - BACKDATE)
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(start)
            .next_update(next_update or (start + dt.timedelta(days=30)))
            .add_extension(x509.CRLNumber(self.crl_number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
                critical=False,
            )
        )
        for serial, (when, reason) in sorted(self.revoked.items()):
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
            if reason is not None:
                entry = entry.add_extension(x509.CRLReason(reason), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(self.private_key, hashes.SHA256())

    def crl_pem(self) -> bytes:
        return self.crl().public_bytes(serialization.Encoding.PEM)

    def write_crl(self, path: Path, *, der: bool = False) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        encoding = serialization.Encoding.DER if der else serialization.Encoding.PEM
        path.write_bytes(self.crl().public_bytes(encoding))
        return path

    def bundle_pem(self, *, include_crl: bool = False) -> bytes:
        """CA certificates (this one up to the root), each followed by its CRL.

        Why: that exact order is what Dovecot's ssl_ca and OpenSSL's
        CRL-checking verifiers expect when every level must have a CRL.
        """
        parts: list[bytes] = []
        authority: CertificateAuthority | None = self
        while authority is not None:
            parts.append(authority.cert_pem())
            if include_crl:
                parts.append(authority.crl_pem())
            authority = authority.parent
        return b"".join(parts)

    def write_bundle(self, path: Path, *, include_crl: bool = False) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.bundle_pem(include_crl=include_crl))
        return path


def _add_policies_and_crls(
    builder: x509.CertificateBuilder, policies: Iterable[str], crl_urls: Iterable[str]
) -> x509.CertificateBuilder:
    infos = [x509.PolicyInformation(x509.ObjectIdentifier(oid), None) for oid in policies]
    if infos:
        builder = builder.add_extension(x509.CertificatePolicies(infos), critical=False)
    points = [
        x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)
        for url in crl_urls
    ]
    if points:
        builder = builder.add_extension(x509.CRLDistributionPoints(points), critical=False)
    return builder


def _ca_name(common_name: str, organization: str | None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _add_ca_extensions(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    return builder.add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True
    ).add_extension(_key_usage(ca=True), critical=True)


def make_ca(
    common_name: str,
    *,
    organization: str | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    days: int = DEFAULT_CA_DAYS,
    key_type: KeyType = "ec",
) -> CertificateAuthority:
    """Create a self-signed root CA (e.g. "Estafette Test CA" or a fake IGC Santé)."""
    key = generate_key(key_type)
    start, end = _validity(not_before, not_after, days)
    name = _ca_name(common_name, organization)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    certificate = _add_ca_extensions(builder).sign(key, hashes.SHA256())
    return CertificateAuthority(certificate, key)


def load_pkcs12(data: bytes, password: bytes) -> IssuedCertificate:
    """Read back a .p12 (what the gateway does with an uploaded APP certificate)."""
    key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    if key is None or cert is None:
        raise ValueError("PKCS#12 bundle has no key or no certificate")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"unsupported key type {type(key).__name__}")
    return IssuedCertificate(cert, key, tuple(extra))
