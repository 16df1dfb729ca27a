"""Inventory of every configured certificate: mailbox client certificates (.p12), the CAs
(servers' and cards') and the CRLs.

An expired APP certificate silently stops a mailbox, and a CRL past its nextUpdate makes
every card or server of its CA refused (revocation fails closed), so operators see each
with its expiry (`warning` under 30 days, under 1 day for a CRL; `error` once expired),
here and as the Prometheus gauge `estafette_certificate_days_left` (labelled by an opaque
id, never an address or a subject).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.storage.models import Mailbox, utcnow

WARNING_DAYS = 30
# CRLs live days, not years, and the refresh job runs hourly: under a day left means
# the refresh is failing.
CRL_WARNING_DAYS = 1


@dataclass(frozen=True)
class CertificateStatus:
    """One certificate as operators see it. `id` is opaque: `mbx_…:client` or `ca:<sha256>`."""

    id: str
    kind: str  # client | ca | card-ca | crl
    mailbox_id: str | None
    subject: str | None
    issuer: str | None
    not_after: datetime | None
    days_left: int | None
    status: str  # ok | warning | error
    detail: str | None = None


def status_of(
    not_after: datetime, now: datetime, warning_days: int = WARNING_DAYS
) -> tuple[int, str]:
    """Whole days left (negative once expired) and the status they mean."""
    left = (not_after - now).total_seconds()
    days = int(left / 86400)  # toward zero: 29 d 23 h left is 29; expired 3 d 2 h ago is -3
    if left <= 0:
        return days, "error"
    return days, "warning" if days < warning_days else "ok"


def _describe(
    certificate: x509.Certificate, *, id: str, kind: str, mailbox_id: str | None, now: datetime
) -> CertificateStatus:
    not_after = certificate.not_valid_after_utc
    days, status = status_of(not_after, now)
    return CertificateStatus(
        id=id,
        kind=kind,
        mailbox_id=mailbox_id,
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        not_after=not_after,
        days_left=days,
        status=status,
    )


class P12Unusable(ValueError):
    """Not a PKCS#12 this passphrase opens, or one without a key and a certificate."""


def load_p12(
    p12: bytes, passphrase: str | None
) -> tuple[PrivateKeyTypes, x509.Certificate, list[x509.Certificate]]:
    """Open a client .p12: the one place that does, for TLS, the admin, the CLI and the
    inventory; raises P12Unusable rather than handing back a half-empty file."""
    try:
        key, certificate, chain = pkcs12.load_key_and_certificates(
            p12, passphrase.encode() if passphrase else None
        )
    except ValueError as exc:
        raise P12Unusable("cannot open the .p12: wrong passphrase or not a PKCS#12") from exc
    if key is None or certificate is None:
        raise P12Unusable("the .p12 holds no private key and certificate")
    return key, certificate, list(chain or [])


def client_certificate(
    p12: bytes, passphrase: str | None, *, mailbox_id: str, now: datetime
) -> CertificateStatus:
    """A mailbox's .p12; one that cannot be opened is an `error` (sync would fail too)."""
    try:
        _key, certificate, _chain = load_p12(p12, passphrase)
    except P12Unusable:
        return CertificateStatus(
            id=f"{mailbox_id}:client",
            kind="client",
            mailbox_id=mailbox_id,
            subject=None,
            issuer=None,
            not_after=None,
            days_left=None,
            status="error",
            detail="the .p12 cannot be opened with the stored passphrase",
        )
    return _describe(
        certificate, id=f"{mailbox_id}:client", kind="client", mailbox_id=mailbox_id, now=now
    )


def ca_certificates(bundle: Path, now: datetime, kind: str = "ca") -> list[CertificateStatus]:
    """Every CA in a bundle (ESTAFETTE_CA_BUNDLE, ESTAFETTE_CARD_CA_BUNDLE), by fingerprint."""
    result = []
    for certificate in x509.load_pem_x509_certificates(bundle.read_bytes()):
        fingerprint = hashlib.sha256(certificate.tbs_certificate_bytes).hexdigest()[:16]
        result.append(
            _describe(certificate, id=f"ca:{fingerprint}", kind=kind, mailbox_id=None, now=now)
        )
    return result


def revocation_lists(paths: Iterable[Path], now: datetime) -> list[CertificateStatus]:
    """Every CRL the gateway checks against, with the time left before its nextUpdate."""
    from backend.crl import load_crls

    result = []
    for crl in load_crls(paths):
        digest = hashlib.sha256(crl.tbs_certlist_bytes).hexdigest()[:16]
        next_update = crl.next_update_utc
        days, status = (
            (None, "error")
            if next_update is None
            else status_of(next_update, now, CRL_WARNING_DAYS)
        )
        result.append(
            CertificateStatus(
                id=f"crl:{digest}",
                kind="crl",
                mailbox_id=None,
                subject=None,
                issuer=crl.issuer.rfc4514_string(),
                not_after=next_update,
                days_left=days,
                status=status,
                detail=None if next_update else "the CRL has no nextUpdate",
            )
        )
    return result


def inventory(
    *,
    db: Session,
    ca_bundle: Path | None,
    now: datetime | None = None,
    card_ca_bundle: Path | None = None,
    crl_paths: Iterable[Path] = (),
) -> list[CertificateStatus]:
    """Every configured certificate: mailbox client certificates, the CAs, then the CRLs."""
    now = now or utcnow()
    mailboxes = db.scalars(
        select(Mailbox).where(Mailbox.imap_certificate.is_not(None)).order_by(Mailbox.id)
    )
    result = [
        client_certificate(m.imap_certificate, m.imap_secret, mailbox_id=m.public_id, now=now)
        for m in mailboxes
    ]
    if ca_bundle is not None:
        result.extend(ca_certificates(ca_bundle, now))
    if card_ca_bundle is not None:
        result.extend(ca_certificates(card_ca_bundle, now, kind="card-ca"))
    result.extend(revocation_lists(crl_paths, now))
    return result


class CertificateCollector(Collector):
    """Computes the gauge at scrape time from the inventory, cached for `ttl` seconds.

    One per process: the app that registers last provides the data (one app per process
    in production; tests build many).
    """

    def __init__(self, ttl: float = 300.0) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._source: tuple[sessionmaker[Session], Path | None, Path | None] | None = None
        self._crl_paths: Callable[[], Iterable[Path]] = tuple
        self._cached: list[CertificateStatus] = []
        self._cached_at = 0.0

    def attach(
        self,
        sessions: sessionmaker[Session],
        ca_bundle: Path | None,
        *,
        card_ca_bundle: Path | None = None,
        crl_paths: Callable[[], Iterable[Path]] = tuple,
    ) -> None:
        """`crl_paths` is called at each scrape: the refresh job adds files meanwhile."""
        with self._lock:
            self._source = (sessions, ca_bundle, card_ca_bundle)
            self._crl_paths = crl_paths
            self._cached_at = 0.0

    def update(self, statuses: list[CertificateStatus]) -> None:
        """Take a freshly computed inventory (e.g. from the admin call) as the cache."""
        with self._lock:
            self._cached, self._cached_at = list(statuses), time.monotonic()

    def _current(self) -> list[CertificateStatus]:
        with self._lock:
            source, fresh = self._source, time.monotonic() - self._cached_at < self._ttl
            if fresh or source is None:
                return self._cached
        sessions, ca_bundle, card_ca_bundle = source
        try:
            with sessions() as db:
                statuses = inventory(
                    db=db,
                    ca_bundle=ca_bundle,
                    card_ca_bundle=card_ca_bundle,
                    crl_paths=self._crl_paths(),
                )
        except Exception:  # a scrape must not fail because the database blinked
            return self._cached
        self.update(statuses)
        return statuses

    def describe(self) -> list[GaugeMetricFamily]:
        return [self._family()]

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "estafette_certificate_days_left",
            "Days until a configured certificate expires (negative: expired or unusable)",
            labels=["certificate", "kind"],
        )

    def collect(self) -> list[GaugeMetricFamily]:
        family = self._family()
        for status in self._current():
            days = status.days_left if status.days_left is not None else -1
            family.add_metric([status.id, status.kind], days)
        return [family]


CERTIFICATES = CertificateCollector()
REGISTRY.register(CERTIFICATES)
