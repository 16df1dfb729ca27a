"""Admin: every configured client certificate and CA, with expiry and status."""

from __future__ import annotations

from dataclasses import asdict

from flask.blueprints import BlueprintSetupState
from flask_smorest import Blueprint

from backend.certificates import CERTIFICATES, inventory
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
    CERTIFICATES.attach(estafette.sessions, estafette.settings.ca_bundle)


@blp.get("")
@audited("admin.certificate_list", target_type="certificate")
@admin_required
@blp.response(200, schemas.CertificateSchema(many=True))
def list_certificates() -> list[dict]:
    """Mailbox .p12 certificates and ESTAFETTE_CA_BUNDLE CAs: `warning` under 30 days."""
    statuses = inventory(db=db(), ca_bundle=services().settings.ca_bundle)
    CERTIFICATES.update(statuses)
    return [asdict(s) for s in statuses]
