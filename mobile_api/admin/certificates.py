"""Admin: every configured client certificate and CA, with expiry and status."""

from __future__ import annotations

from dataclasses import asdict

from flask.blueprints import BlueprintSetupState
from flask_smorest import Blueprint

from backend.certificates import CERTIFICATES, inventory
from backend.crl import crl_files
from mobile_api.admin import schemas
from mobile_api.auditing import audited
from mobile_api.auth.tokens import admin_required
from mobile_api.context import db, services

blp = Blueprint(
    "admin_certificates",
    __name__,
    url_prefix="/api/v1/admin/certificates",
    description="Admin: certificates",
)


@blp.record_once
def _feed_the_gauge(state: BlueprintSetupState) -> None:
    # The Prometheus gauge reads the inventory of this app's database at scrape time.
    estafette = state.app.extensions["estafette"]
    settings = estafette.settings
    CERTIFICATES.attach(
        estafette.sessions,
        settings.ca_bundle,
        card_ca_bundle=settings.card_ca_bundle,
        crl_paths=lambda: crl_files(settings.crl_files, settings.var_dir),
    )


@blp.get("")
@audited("admin.certificate_list", target_type="certificate")
@admin_required
@blp.response(200, schemas.CertificateSchema(many=True))
def list_certificates() -> list[dict]:
    """Mailbox .p12 certificates, the CAs and the CRLs: `warning` under 30 days (CRL: 1)."""
    settings = services().settings
    statuses = inventory(
        db=db(),
        ca_bundle=settings.ca_bundle,
        card_ca_bundle=settings.card_ca_bundle,
        crl_paths=crl_files(settings.crl_files, settings.var_dir),
    )
    CERTIFICATES.update(statuses)
    return [asdict(s) for s in statuses]
