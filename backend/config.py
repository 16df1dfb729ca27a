"""Settings, read once from the environment (or an `.env` file) and checked at start-up.

Every variable of API.md's configuration table is read here and nowhere else, so a bad
value fails at start with a clear message instead of deep inside a request.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

log = logging.getLogger("estafette.config")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VAR_DIR = PROJECT_ROOT / "var"


# The browsers' push services. A subscription names the URL the gateway will POST to; any
# other origin would let a user aim the dispatcher at the hospital's own network.
DEFAULT_WEB_PUSH_ORIGINS = (
    "https://fcm.googleapis.com",  # Chrome, Edge on Android
    "https://updates.push.services.mozilla.com",  # Firefox
    "https://web.push.apple.com",  # Safari
    "https://*.notify.windows.com",  # Edge on Windows
)


# The ANS's daily MSSanté extraction (a ZIP of one pipe-separated file) and its FHIR API.
DEFAULT_DIRECTORY_URL = (
    "https://service.annuaire.sante.fr/annuaire-sante-webservices/V300/services/extraction/"
    "Extraction_Correspondance_MSSante"
)
DEFAULT_ANNUAIRE_FHIR_URL = "https://gateway.api.esante.gouv.fr/fhir/v2"


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message says which and why."""


OIDC_KINDS = ("psc", "idp")


@dataclass(frozen=True)
class OidcProviderSettings:
    """One OpenID provider the users may sign in with (ESTAFETTE_OIDC_PROVIDERS).

    `psc` is Pro Santé Connect: its `SubjectNameID` (the IdNat_PS, as on the CPS card)
    names the user. `idp` is the establishment's own provider: `user_claim` names the user,
    and `admin_claim` holding `admin_value` (a role or group) makes them an administrator.
    """

    name: str
    kind: str
    issuer: str
    client_id: str
    client_secret: str | None = None
    # What a sign-in button says (GET /auth/methods): `label`, or PSC's name, or the name.
    label: str = ""
    # Token endpoint authentication by mTLS (tls_client_auth) instead of a secret.
    client_cert: Path | None = None
    client_key: Path | None = None
    scopes: tuple[str, ...] = ("openid", "scope_all")
    acr_values: tuple[str, ...] = ("eidas1",)
    user_claim: str = "SubjectNameID"
    admin_claim: str | None = None
    admin_value: str | None = None
    jit_provisioning: bool = False
    ca_bundle: Path | None = None  # the provider's TLS CAs; None: the system store
    # The IdP's directory (SCIM 2.0): `users sync-idp` imports users, disables leavers and
    # grants mailboxes by group: (group display name, mailbox address, role).
    scim_url: str | None = None
    scim_token: str | None = None
    mailbox_groups: tuple[tuple[str, str, str], ...] = ()

    @property
    def tls_verify(self) -> str | bool:
        """What HTTP clients (requests, httpx) take as `verify` for this provider."""
        return str(self.ca_bundle) if self.ca_bundle else True


@dataclass(frozen=True)
class Settings:
    """The gateway's configuration. Built by `load_settings`; immutable afterwards."""

    database_url: str
    secret_key: str
    data_key: bytes
    var_dir: Path
    redis_url: str | None = None
    fcm_credentials: Path | None = None
    fcm_endpoint: str | None = None
    # Web Push (RFC 8030) for the web client: the VAPID key (RFC 8292) that signs for us,
    # our contact for the push services, and the push services we agree to post to.
    vapid_private_key: Path | None = None
    vapid_subject: str | None = None
    web_push_origins: tuple[str, ...] = DEFAULT_WEB_PUSH_ORIGINS
    ca_bundle: Path | None = None  # None: the system store, named on purpose ("system")
    trust_space: Path | None = None
    trusted_proxies: tuple[str, ...] = ()
    crl_files: tuple[Path, ...] = ()
    nil: str | None = None
    session_idle_minutes: int = 120
    access_token_minutes: int = 10
    max_message_bytes: int = 25 * 1024 * 1024
    sync_lease_seconds: int = 30
    imap_timeout_seconds: int = 30
    folder_poll_seconds: int = 60
    audit_retention_days: int = 365
    push_previews: bool = False
    push_lease_seconds: int = 120
    # Absolute session lifetime, whatever the refreshes.
    session_max_days: int = 7
    # Signed audit checkpoints (backend/audit/checkpoints.py).
    audit_signing_key: Path | None = None
    audit_checkpoint_file: Path | None = None
    audit_syslog: str | None = None
    audit_checkpoint_records: int = 1000
    audit_checkpoint_seconds: int = 300
    # Push retries are bounded by time, not by a count.
    push_stale_seconds: int = 3600
    # -- certificates and revocation (security audit, issue 13) --
    card_ca_bundle: Path | None = None
    card_policies: tuple[str, ...] = ()
    crl_urls: tuple[str, ...] = ()
    # Key rotation: (id, key) rings, the current key first; the others still open or verify.
    # Unset, each is the one-key ring ("default", ESTAFETTE_DATA_KEY / ESTAFETTE_SECRET_KEY).
    data_keys: tuple[tuple[str, bytes], ...] = ()
    signing_keys: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.data_keys:
            object.__setattr__(self, "data_keys", ((DEFAULT_KEY_ID, self.data_key),))
        if not self.signing_keys:
            object.__setattr__(self, "signing_keys", ((DEFAULT_KEY_ID, self.secret_key),))

    # /metrics and /healthz of the sync and push processes (backend/metrics_endpoint.py).
    log_format: str = "text"  # ESTAFETTE_LOG_FORMAT: "json" for a SIEM (backend/logs.py)
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    # -- the national directory (backend/directory/) --
    directory_url: str = DEFAULT_DIRECTORY_URL
    directory_ca_bundle: Path | None = None  # None: the system store
    outbound_proxy: str | None = None  # HTTP(S) proxy for the directory's downloads and API
    directory_unknown_recipients: str = "warn"  # or "refuse"
    annuaire_fhir_url: str = DEFAULT_ANNUAIRE_FHIR_URL
    annuaire_api_key: str | None = None
    # -- OpenID Connect sign-in (Pro Santé Connect, the establishment's IdP; issue 17) --
    oidc_providers: tuple[OidcProviderSettings, ...] = ()
    oidc_redirect_uris: tuple[str, ...] = ()
    public_url: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def web_push_configured(self) -> bool:
        """A VAPID key and a contact: both are needed to send Web Push (RFC 8292)."""
        return bool(self.vapid_private_key and self.vapid_subject)


def _read_environment(env_file: Path | None) -> dict[str, str]:
    """Environment variables win over `.env`, as operators expect from twelve-factor apps."""
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update({k: v for k, v in os.environ.items() if k.startswith("ESTAFETTE_")})
    return values


def _persistent_secret(var_dir: Path, name: str, make: Callable[[], str]) -> str:
    """Generate a secret once into var/ so the embedded mode survives restarts."""
    path = var_dir / name
    if path.is_file():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    log.warning(
        "%s was not set: generated one into %s. Set it explicitly in production.",
        name.upper(),
        path,
    )
    return value


def _decode_data_key(raw: str, name: str = "ESTAFETTE_DATA_KEY") -> bytes:
    """The data key is 32 random bytes, given as urlsafe base64 (44 characters)."""
    try:
        key = base64.urlsafe_b64decode(raw.encode() + b"=" * (-len(raw) % 4))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{name} must be urlsafe base64 of 32 bytes") from exc
    if len(key) != 32:
        raise ConfigError(
            f"{name} must decode to 32 bytes (AES-256), got {len(key)}; "
            "generate one with: python -c 'import base64,os;"
            "print(base64.urlsafe_b64encode(os.urandom(32)).decode())'"
        )
    return key


DEFAULT_KEY_ID = "default"
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def _key_ring(raw: str, name: str) -> list[tuple[str, str]]:
    """`id:key,id:key`, the current key first: the ring a key rotation edits."""
    ring: list[tuple[str, str]] = []
    for entry in (part.strip() for part in raw.split(",")):
        key_id, sep, key = entry.partition(":")
        if not entry or not sep or not _KEY_ID.fullmatch(key_id) or not key:
            raise ConfigError(f"{name} must read id:key,id:key (ids: letters, digits, ._-)")
        if key_id in dict(ring):
            raise ConfigError(f"{name} names the key id {key_id!r} twice")
        ring.append((key_id, key))
    return ring


def _data_keys(values: dict[str, str]) -> tuple[tuple[str, bytes], ...]:
    raw = values.get("ESTAFETTE_DATA_KEYS") or ""
    ring = _key_ring(raw, "ESTAFETTE_DATA_KEYS") if raw.strip() else []
    return tuple((key_id, _decode_data_key(key, "ESTAFETTE_DATA_KEYS")) for key_id, key in ring)


def _signing_keys(values: dict[str, str]) -> tuple[tuple[str, str], ...]:
    raw = values.get("ESTAFETTE_SIGNING_KEYS") or ""
    ring = _key_ring(raw, "ESTAFETTE_SIGNING_KEYS") if raw.strip() else []
    if any(len(secret) < 32 for _key_id, secret in ring):
        raise ConfigError("each ESTAFETTE_SIGNING_KEYS key must be at least 32 characters long")
    return tuple(ring)


def _log_format(values: dict[str, str]) -> str:
    value = (values.get("ESTAFETTE_LOG_FORMAT") or "text").strip().lower()
    if value not in ("text", "json"):
        raise ConfigError("ESTAFETTE_LOG_FORMAT must be text or json")
    return value


def _metrics_port(values: dict[str, str]) -> int | None:
    if not values.get("ESTAFETTE_METRICS_PORT"):
        return None
    port = _positive_int(values, "ESTAFETTE_METRICS_PORT", 0)
    if port > 65535:
        raise ConfigError("ESTAFETTE_METRICS_PORT must be a TCP port (1-65535)")
    return port


def _vapid_subject(values: dict[str, str]) -> str | None:
    """RFC 8292 §2.1: a `mailto:` or `https:` URI where the push service can reach us."""
    subject = (values.get("ESTAFETTE_VAPID_SUBJECT") or "").strip() or None
    if subject is not None and not subject.startswith(("mailto:", "https://")):
        raise ConfigError("ESTAFETTE_VAPID_SUBJECT must be a mailto: or https:// URI")
    return subject


def _web_push_origins(values: dict[str, str]) -> tuple[str, ...]:
    raw = values.get("ESTAFETTE_WEB_PUSH_ORIGINS")
    if not raw:
        return DEFAULT_WEB_PUSH_ORIGINS
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if not origin.startswith(("https://", "http://127.", "http://localhost")):
            raise ConfigError(
                f"ESTAFETTE_WEB_PUSH_ORIGINS: {origin!r} must be https (http on loopback only)"
            )
    return origins


def _existing_file(values: dict[str, str], name: str) -> Path | None:
    raw = values.get(name)
    if not raw:
        return None
    path = Path(raw)
    if not path.is_file():
        raise ConfigError(f"{name} points to {raw}, which is not a readable file")
    return path


def _positive_int(values: dict[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = values.get(name)
    if raw is None or raw == "":
        return default
    try:
        number = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}")
    return number


def _on_off(values: dict[str, str], name: str, *, default: bool) -> bool:
    raw = (values.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in ("on", "off"):
        raise ConfigError(f"{name} must be on or off, got {raw!r}")
    return raw == "on"


def _session_idle_minutes(values: dict[str, str]) -> int:
    """MSSanté/PGSSI-S: a session locks after 2 hours without activity at most."""
    minutes = _positive_int(values, "ESTAFETTE_SESSION_IDLE_MINUTES", 120)
    if minutes > 120:
        raise ConfigError("ESTAFETTE_SESSION_IDLE_MINUTES may not exceed 120 (2 hours)")
    return minutes


def _audit_syslog(values: dict[str, str]) -> str | None:
    """Where checkpoints go for the SIEM: a socket path or host:port; `off`; default /dev/log."""
    raw = (values.get("ESTAFETTE_AUDIT_SYSLOG") or "").strip()
    if raw.lower() == "off":
        return None
    if not raw:
        return "/dev/log" if Path("/dev/log").exists() else None
    if not raw.startswith("/"):
        host, _, port = raw.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                f"ESTAFETTE_AUDIT_SYSLOG must be off, a socket path or host:port, got {raw!r}"
            )
    return raw


# ANS (ex-ASIP Santé) arc, under which IGC Santé registers its certificate policies.
# Narrow it to the card-authentication policies of the published PC
# (igc-sante.esante.gouv.fr/PC) with ESTAFETTE_CARD_POLICIES.
DEFAULT_CARD_POLICIES = ("1.2.250.1.71",)
SYSTEM_STORE = "system"


def _ca_bundle(values: dict[str, str]) -> Path | None:
    """The CAs for IMAP/SMTP servers. Unset is refused: trusting every public CA for a
    health operator must be chosen on purpose (`system`), never fallen into."""
    raw = (values.get("ESTAFETTE_CA_BUNDLE") or "").strip()
    if not raw:
        raise ConfigError(
            "ESTAFETTE_CA_BUNDLE is not set: name the IGC Santé CA bundle file that "
            "IMAP/SMTP servers are checked against, or 'system' to trust the system store"
        )
    if raw == SYSTEM_STORE:
        return None
    return _existing_file({"ESTAFETTE_CA_BUNDLE": raw}, "ESTAFETTE_CA_BUNDLE")


def _card_policies(values: dict[str, str]) -> tuple[str, ...]:
    raw = values.get("ESTAFETTE_CARD_POLICIES")
    if raw is None or not raw.strip():
        return DEFAULT_CARD_POLICIES
    policies = tuple(p.strip() for p in raw.split(",") if p.strip())
    for policy in policies:
        if not all(part.isdigit() for part in policy.split(".")) or policy.count(".") < 1:
            raise ConfigError(f"ESTAFETTE_CARD_POLICIES: {policy!r} is not an OID")
    return policies


def _crl_urls(values: dict[str, str]) -> tuple[str, ...]:
    urls = tuple(
        u.strip() for u in (values.get("ESTAFETTE_CRL_URLS") or "").split(",") if u.strip()
    )
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"ESTAFETTE_CRL_URLS: {url!r} is not an http(s) URL")
    return urls


def _http_url(values: dict[str, str], name: str, default: str | None) -> str | None:
    raw = (values.get(name) or "").strip()
    if not raw:
        return default
    if not raw.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def _unknown_recipients(values: dict[str, str]) -> str:
    """An address missing from the directory: a warning in the send response, or a 422."""
    value = (values.get("ESTAFETTE_DIRECTORY_UNKNOWN_RECIPIENTS") or "warn").strip().lower()
    if value not in ("warn", "refuse"):
        raise ConfigError("ESTAFETTE_DIRECTORY_UNKNOWN_RECIPIENTS must be warn or refuse")
    return value


def _trusted_proxies(value: str) -> tuple[str, ...]:
    """Addresses or networks, comma-separated; empty or `none` trusts nobody."""
    if value.strip().lower() == "none":
        return ()
    return tuple(p.strip() for p in value.split(",") if p.strip())


def _is_loopback_http(url: str) -> bool:
    return url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]"))


def _secure_url(name: str, url: str) -> str:
    if not (url.startswith("https://") or _is_loopback_http(url)):
        raise ConfigError(f"{name}: {url!r} must be https (http on loopback only)")
    return url.rstrip("/")


def _oidc_provider(values: dict[str, str], name: str, raw: object) -> OidcProviderSettings:
    where = f"ESTAFETTE_OIDC_PROVIDERS ({name})"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: each provider is a JSON object")
    kind = raw.get("kind")
    if kind not in OIDC_KINDS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(OIDC_KINDS)}")
    for key in ("issuer", "client_id"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"{where}: {key} is required")
    env_name = f"ESTAFETTE_OIDC_{name.upper().replace('-', '_')}_CLIENT_SECRET"
    secret = values.get(env_name) or None
    secret_file = raw.get("client_secret_file")
    if secret is None and secret_file:
        secret = _existing_file({env_name: secret_file}, env_name).read_text().strip()
    if "client_secret" in raw:
        raise ConfigError(f"{where}: put the secret in client_secret_file or {env_name}")
    cert = _existing_file(raw, "client_cert") if raw.get("client_cert") else None
    key = _existing_file(raw, "client_key") if raw.get("client_key") else None
    if secret is None and cert is None:
        raise ConfigError(f"{where}: give a client secret ({env_name}) or a client_cert")
    scim_token = values.get(f"ESTAFETTE_OIDC_{name.upper().replace('-', '_')}_SCIM_TOKEN")
    if not scim_token and raw.get("scim_token_file"):
        scim_token = _existing_file(raw, "scim_token_file").read_text().strip()
    if raw.get("scim_url") and not scim_token:
        raise ConfigError(f"{where}: scim_url needs a scim_token_file (a bearer token)")
    groups = raw.get("mailbox_groups") or {}
    if not isinstance(groups, dict) or not all(
        isinstance(g, dict) and g.get("mailbox") and g.get("role") in ("owner", "delegate")
        for g in groups.values()
    ):
        raise ConfigError(
            f'{where}: mailbox_groups maps a group to {{"mailbox": ADDRESS, "role": '
            f'"owner" or "delegate"}}'
        )
    label = raw.get("label") or ("Pro Santé Connect" if kind == "psc" else name)
    if not isinstance(label, str) or len(label) > 64:
        raise ConfigError(f"{where}: label is a short text (64 characters at most)")
    default_claim = "SubjectNameID" if kind == "psc" else "preferred_username"
    default_scopes = ["openid", "scope_all"] if kind == "psc" else ["openid", "profile"]
    return OidcProviderSettings(
        name=name,
        kind=kind,
        issuer=_secure_url(f"{where} issuer", raw["issuer"]),
        client_id=raw["client_id"],
        client_secret=secret,
        label=label,
        client_cert=cert,
        client_key=key,
        scopes=tuple(raw.get("scopes") or default_scopes),
        acr_values=tuple(raw.get("acr_values") or (["eidas1"] if kind == "psc" else [])),
        user_claim=raw.get("user_claim") or default_claim,
        admin_claim=raw.get("admin_claim") or None,
        admin_value=raw.get("admin_value") or None,
        jit_provisioning=bool(raw.get("jit_provisioning", False)),
        ca_bundle=_existing_file(raw, "ca_bundle") if raw.get("ca_bundle") else None,
        scim_url=_secure_url(f"{where} scim_url", raw["scim_url"]) if raw.get("scim_url") else None,
        scim_token=scim_token or None,
        mailbox_groups=tuple(
            (group, spec["mailbox"].strip().lower(), spec["role"]) for group, spec in groups.items()
        ),
    )


def _oidc_providers(values: dict[str, str]) -> tuple[OidcProviderSettings, ...]:
    """A JSON file naming each provider (README, "Sign in with Pro Santé Connect")."""
    path = _existing_file(values, "ESTAFETTE_OIDC_PROVIDERS")
    if path is None:
        return ()
    try:
        described = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"ESTAFETTE_OIDC_PROVIDERS: {path} is not JSON ({exc})") from exc
    if not isinstance(described, dict):
        raise ConfigError("ESTAFETTE_OIDC_PROVIDERS: an object of providers by name")
    for name in described:
        if not name.replace("-", "").isalnum() or len(name) > 32:
            raise ConfigError(f"ESTAFETTE_OIDC_PROVIDERS: {name!r} is not a short plain name")
    return tuple(_oidc_provider(values, name, raw) for name, raw in described.items())


def _redirect_uris(values: dict[str, str]) -> tuple[str, ...]:
    """Where the apps may be sent back (RFC 8252): exact URIs, an app scheme or https."""
    uris = tuple(u.strip() for u in (values.get("ESTAFETTE_OIDC_REDIRECT_URIS") or "").split(","))
    for uri in (u for u in uris if u):
        if uri.startswith("http://") and not _is_loopback_http(uri):
            raise ConfigError(f"ESTAFETTE_OIDC_REDIRECT_URIS: {uri!r} must not be plain http")
        if ":" not in uri:
            raise ConfigError(f"ESTAFETTE_OIDC_REDIRECT_URIS: {uri!r} is not a URI")
    return tuple(u for u in uris if u)


def load_settings(
    overrides: dict[str, str] | None = None, env_file: Path | None = None
) -> Settings:
    """Read, default and validate every setting; raise ConfigError naming the bad one."""
    values = _read_environment(env_file if env_file is not None else PROJECT_ROOT / ".env")
    values.update(overrides or {})
    var_dir = Path(values.get("ESTAFETTE_VAR_DIR") or DEFAULT_VAR_DIR)

    database_url = values.get("ESTAFETTE_DATABASE_URL") or f"sqlite:///{var_dir / 'estafette.db'}"
    if "://" not in database_url:
        raise ConfigError(f"ESTAFETTE_DATABASE_URL is not an SQLAlchemy URL: {database_url!r}")
    if database_url.startswith(("postgresql://", "postgres://")):
        # psycopg 3 is the driver we ship; plain URLs would ask SQLAlchemy for psycopg2.
        database_url = "postgresql+psycopg://" + database_url.split("://", 1)[1]

    secret_key = values.get("ESTAFETTE_SECRET_KEY") or _persistent_secret(
        var_dir, "estafette_secret_key", lambda: secrets.token_urlsafe(48)
    )
    if len(secret_key) < 32:
        raise ConfigError("ESTAFETTE_SECRET_KEY must be at least 32 characters long")
    data_keys = _data_keys(values)
    data_key = (
        data_keys[0][1]
        if data_keys
        else _decode_data_key(
            values.get("ESTAFETTE_DATA_KEY")
            or _persistent_secret(
                var_dir,
                "estafette_data_key",
                lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            )
        )
    )

    redis_url = values.get("ESTAFETTE_REDIS_URL") or None
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"ESTAFETTE_REDIS_URL must be a redis:// URL, got {redis_url!r}")
    endpoint = values.get("ESTAFETTE_FCM_ENDPOINT") or None
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"ESTAFETTE_FCM_ENDPOINT must be an http(s) URL, got {endpoint!r}")

    proxies = _trusted_proxies(values.get("ESTAFETTE_TRUSTED_PROXIES") or "")
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError as exc:
            raise ConfigError(
                f"ESTAFETTE_TRUSTED_PROXIES: {proxy!r} is not an IP or network"
            ) from exc
    crl_files = tuple(
        _existing_file({"ESTAFETTE_CRL": p.strip()}, "ESTAFETTE_CRL")
        for p in (values.get("ESTAFETTE_CRL") or "").split(",")
        if p.strip()
    )
    nil = values.get("ESTAFETTE_NIL") or None
    if nil is None:
        log.warning("ESTAFETTE_NIL is not set: outgoing mail will carry no X-MSS-NIL value")

    retention = _positive_int(values, "ESTAFETTE_AUDIT_RETENTION_DAYS", 365, minimum=183)
    return Settings(
        database_url=database_url,
        secret_key=secret_key,
        data_key=data_key,
        var_dir=var_dir,
        redis_url=redis_url,
        fcm_credentials=_existing_file(values, "ESTAFETTE_FCM_CREDENTIALS"),
        fcm_endpoint=endpoint,
        log_format=_log_format(values),
        metrics_port=_metrics_port(values),
        metrics_address=values.get("ESTAFETTE_METRICS_ADDRESS") or "127.0.0.1",
        vapid_private_key=_existing_file(values, "ESTAFETTE_VAPID_PRIVATE_KEY"),
        vapid_subject=_vapid_subject(values),
        web_push_origins=_web_push_origins(values),
        ca_bundle=_ca_bundle(values),
        trust_space=_existing_file(values, "ESTAFETTE_TRUST_SPACE"),
        trusted_proxies=proxies,
        crl_files=crl_files,
        nil=nil,
        session_idle_minutes=_session_idle_minutes(values),
        access_token_minutes=_positive_int(values, "ESTAFETTE_ACCESS_TOKEN_MINUTES", 10),
        max_message_bytes=_positive_int(values, "ESTAFETTE_MAX_MESSAGE_BYTES", 25 * 1024 * 1024),
        sync_lease_seconds=_positive_int(values, "ESTAFETTE_SYNC_LEASE_SECONDS", 30, minimum=5),
        imap_timeout_seconds=_positive_int(values, "ESTAFETTE_IMAP_TIMEOUT_SECONDS", 30),
        folder_poll_seconds=_positive_int(values, "ESTAFETTE_FOLDER_POLL_SECONDS", 60, minimum=5),
        audit_retention_days=retention,
        push_previews=_on_off(values, "ESTAFETTE_PUSH_PREVIEWS", default=False),
        push_lease_seconds=_positive_int(values, "ESTAFETTE_PUSH_LEASE_SECONDS", 120, minimum=5),
        session_max_days=_positive_int(values, "ESTAFETTE_SESSION_MAX_DAYS", 7),
        audit_signing_key=_existing_file(values, "ESTAFETTE_AUDIT_SIGNING_KEY"),
        audit_checkpoint_file=Path(
            values.get("ESTAFETTE_AUDIT_CHECKPOINT_FILE") or var_dir / "audit-checkpoints.jsonl"
        ),
        audit_syslog=_audit_syslog(values),
        audit_checkpoint_records=_positive_int(values, "ESTAFETTE_AUDIT_CHECKPOINT_RECORDS", 1000),
        audit_checkpoint_seconds=_positive_int(values, "ESTAFETTE_AUDIT_CHECKPOINT_SECONDS", 300),
        push_stale_seconds=_positive_int(values, "ESTAFETTE_PUSH_STALE_SECONDS", 3600, minimum=60),
        card_ca_bundle=_existing_file(values, "ESTAFETTE_CARD_CA_BUNDLE"),
        card_policies=_card_policies(values),
        crl_urls=_crl_urls(values),
        directory_url=_http_url(values, "ESTAFETTE_DIRECTORY_URL", DEFAULT_DIRECTORY_URL),
        directory_ca_bundle=_existing_file(values, "ESTAFETTE_DIRECTORY_CA_BUNDLE"),
        outbound_proxy=_http_url(values, "ESTAFETTE_OUTBOUND_PROXY", None),
        directory_unknown_recipients=_unknown_recipients(values),
        annuaire_fhir_url=_http_url(
            values, "ESTAFETTE_ANNUAIRE_FHIR_URL", DEFAULT_ANNUAIRE_FHIR_URL
        ),
        annuaire_api_key=(values.get("ESTAFETTE_ANNUAIRE_API_KEY") or "").strip() or None,
        data_keys=data_keys,
        signing_keys=_signing_keys(values),
        oidc_providers=_oidc_providers(values),
        oidc_redirect_uris=_redirect_uris(values),
        public_url=_secure_url("ESTAFETTE_PUBLIC_URL", values["ESTAFETTE_PUBLIC_URL"])
        if values.get("ESTAFETTE_PUBLIC_URL")
        else None,
    )
