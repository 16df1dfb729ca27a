"""The Flask HTTP layer: create_app() wires settings, storage, auth and the blueprints.

The app holds no per-user state of its own, so any number of processes can serve it.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from flask import Flask, Response, request
from flask_smorest import Api
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from backend.accounts.revocations import make_revocation_store
from backend.audit.anchoring import Checkpointer
from backend.audit.trail import AuditTrail
from backend.config import Settings, load_settings
from backend.logs import configure_logging
from backend.mail.tls import configure_revocation
from backend.storage.database import make_engine, make_session_factory
from backend.storage.encryption import set_data_keys
from mobile_api import errors
from mobile_api.context import Services, init_request_scope
from mobile_api.json_bodies import init_json_checks
from mobile_api.openapi_contract import CallContract, nullable_choice_as_named_enum
from mobile_api.operation_ids import OperationIds
from mobile_api.push_document import PUSH_DATA, webhooks
from mobile_api.schema_docs import SchemaDocs, describe_field

API_VERSION = "1.0.0"


class TrustedProxies:
    """Apply X-Forwarded-* only when the TCP peer is one of ESTAFETTE_TRUSTED_PROXIES.

    ProxyFix alone would believe any client that sets the header, letting it forge its
    address in the audit trail and slip past per-IP rate limits.
    """

    def __init__(self, wsgi_app: Any, proxies: tuple[str, ...]) -> None:
        self._plain = wsgi_app
        self._fixed = ProxyFix(wsgi_app, x_for=1, x_proto=1, x_host=1)
        self._networks = [ipaddress.ip_network(p, strict=False) for p in proxies]

    def __call__(self, environ: dict, start_response: Any) -> Any:
        try:
            peer = ipaddress.ip_address(environ.get("REMOTE_ADDR", ""))
        except ValueError:
            peer = None
        if peer is not None and any(peer in net for net in self._networks):
            return self._fixed(environ, start_response)
        return self._plain(environ, start_response)


class ProblemApi(Api):
    """flask-smorest's Api, with its error envelope replaced by our problem+json."""

    ERROR_SCHEMA = errors.ProblemSchema

    def handle_http_exception(self, error: HTTPException) -> Any:
        return errors._from_http(error)

    def _register_responses(self) -> None:
        """Document every error response as what it is: application/problem+json."""
        content_type = self.DEFAULT_RESPONSE_CONTENT_TYPE
        self.DEFAULT_RESPONSE_CONTENT_TYPE = errors.PROBLEM_JSON
        try:
            super()._register_responses()
        finally:
            self.DEFAULT_RESPONSE_CONTENT_TYPE = content_type


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app. `test_config` overrides settings (ESTAFETTE_* keys) and Flask config."""
    configure_logging()  # first: the settings' own warnings are log lines like the rest
    test_config = dict(test_config or {})
    overrides = {k: v for k, v in test_config.items() if k.startswith("ESTAFETTE_")}
    settings: Settings = test_config.pop("SETTINGS", None) or load_settings(overrides)

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_message_bytes + 1024 * 1024,
        API_TITLE="Estafette",
        API_VERSION=API_VERSION,
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {"description": "MSSanté secure mail for hospital phones and tablets"},
            "servers": [{"url": "/", "description": "This gateway"}],
            "security": [{"bearer": []}],
            "webhooks": webhooks(),
        },
        JSON_SORT_KEYS=False,
    )
    app.config.update({k: v for k, v in test_config.items() if not k.startswith("ESTAFETTE_")})
    if settings.trusted_proxies:
        app.wsgi_app = TrustedProxies(app.wsgi_app, settings.trusted_proxies)

    set_data_keys(settings.data_keys)
    configure_revocation(settings.crl_files, settings.var_dir)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    app.extensions["estafette"] = Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        audit=AuditTrail(sessions, Checkpointer(engine, settings)),
        revocations=make_revocation_store(settings.redis_url, sessions),
    )
    init_request_scope(app)

    from mobile_api.auth.tokens import init_jwt

    init_jwt(app, settings)
    from mobile_api.limits import init_limiter

    init_limiter(app, settings, engine)
    api = ProblemApi(
        app, spec_kwargs={"extra_plugins": [OperationIds(), CallContract(app), SchemaDocs()]}
    )
    api.ma_plugin.converter.add_attribute_function(nullable_choice_as_named_enum)
    api.ma_plugin.converter.add_attribute_function(describe_field)
    api.spec.components.schema("PushData", PUSH_DATA)
    api.spec.tag({"name": "push", "description": "Pushes the gateway sends to an app"})
    errors.register_error_handlers(app)
    init_json_checks(app)
    app.after_request(_no_store)
    from mobile_api.ops.request_metrics import init_request_metrics

    init_request_metrics(app)
    _register_blueprints(app, api)
    from mobile_api.auditing import init_auditing

    init_auditing(app)

    from mobile_api.cli import register_commands

    register_commands(app)
    logging.getLogger("estafette").setLevel(logging.INFO)
    return app


def _no_store(response: Response) -> Response:
    """Health data and tokens are never kept by a cache (RFC 6749 §5.1, RFC 9111 §5.2.2.5).

    The one place that says so, for every /api/v1 answer, errors included.
    """
    if request.path.startswith("/api/v1"):
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    return response


def _register_blueprints(app: Flask, api: Api) -> None:
    from mobile_api.admin import register_admin
    from mobile_api.api_browser import blp as api_browser
    from mobile_api.auth.oidc import blp as oidc
    from mobile_api.auth.routes import blp as auth
    from mobile_api.delta_sync.routes import blp as changes
    from mobile_api.devices.routes import blp as devices
    from mobile_api.directory.routes import blp as directory
    from mobile_api.mailboxes.routes import blp as mailboxes
    from mobile_api.messages.routes import blp as messages
    from mobile_api.notifications.routes import blp as notifications
    from mobile_api.ops.routes import blp as ops
    from mobile_api.outgoing.routes import blp as outgoing

    for blueprint in (auth, oidc, devices, mailboxes, changes, notifications, messages):
        api.register_blueprint(blueprint)
    register_admin(api)
    api.register_blueprint(outgoing)
    api.register_blueprint(directory)
    app.register_blueprint(ops)
    from mobile_api.web_client import blp as web_client

    app.register_blueprint(web_client)
    app.register_blueprint(api_browser)
