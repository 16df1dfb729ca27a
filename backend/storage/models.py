"""The database schema. Public ids are opaque strings; integer keys never leave the server.

Fields that could identify a patient, a correspondent or a secret are encrypted at rest
(`Sealed*` fields, each bound to its column and its row's public id: see encryption.py).
IMAP stays the source of truth: the message rows are a cache that a resync can rebuild.
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from backend.ids import new_id
from backend.storage.encryption import SealedBytes, SealedColumn, SealedJSON, SealedText


def utcnow() -> datetime:
    """Aware UTC now: every timestamp we store and serve is UTC (API.md, RFC 3339)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timestamps stored naive-UTC everywhere and always read back as aware UTC.

    SQLite has no time zones; normalising here keeps both engines identical.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)

    def __init__(self, **kwargs: Any) -> None:
        """Give a new row its public id first: the sealed fields set next are bound to it."""
        column = self.__table__.c.get("public_id")
        if column is not None:
            public_id = kwargs.pop("public_id", None) or new_id(column.info["id_prefix"])
            kwargs = {"public_id": public_id, **kwargs}
        self.registry.constructor(self, **kwargs)

    @classmethod
    def sealed_field(cls, name: str) -> SealedBytes:
        """The `Sealed*` field `name`, to open what a Core query selected from its column."""
        field = inspect.getattr_static(cls, name)
        if not isinstance(field, SealedBytes):
            raise TypeError(f"{cls.__name__}.{name} is not a sealed field")
        return field


def public_id_column(prefix: str) -> Mapped[str]:
    """An opaque public id (`usr_...`), the identity sealed fields are bound to; never changes."""
    return mapped_column(
        String(32), unique=True, default=lambda: new_id(prefix), info={"id_prefix": prefix}
    )


BigId = BigInteger().with_variant(Integer, "sqlite")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = public_id_column("usr")
    username: Mapped[str] = mapped_column(String(190), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(190))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    cps_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    _totp_secret: Mapped[bytes | None] = mapped_column("totp_secret", SealedColumn)
    totp_secret = SealedText("users.totp_secret")
    # What goes under the mail the user sends (GET/PUT /me/signature): often a name, a
    # phone number and an RPPS number, so sealed like the rest.
    _signature: Mapped[bytes | None] = mapped_column("signature", SealedColumn)
    signature = SealedText("users.signature")
    totp_active: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_last_step: Mapped[int] = mapped_column(BigInteger, default=0)
    failed_otp_count: Mapped[int] = mapped_column(Integer, default=0)
    lockouts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Every token carries it; a password change, TOTP reset or disable bumps it (0003).
    credentials_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Quiet hours (minutes after local midnight, in an IANA zone): pushes wait unless on call.
    quiet_start_minute: Mapped[int | None] = mapped_column(Integer)
    quiet_end_minute: Mapped[int | None] = mapped_column(Integer)
    quiet_timezone: Mapped[str | None] = mapped_column(String(64))
    on_call: Mapped[bool] = mapped_column(Boolean, default=False)

    memberships: Mapped[list[Membership]] = relationship(back_populates="user")
    devices: Mapped[list[Device]] = relationship(back_populates="user")


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(255))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Device(Base):
    """A phone, tablet or browser a user signed in from; every session belongs to one."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = public_id_column("dev")
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    platform: Mapped[str] = mapped_column(String(16))
    # The FCM/APNs token addresses pushes to this very phone: sealed like a secret.
    _push_token: Mapped[bytes | None] = mapped_column("push_token", SealedColumn)
    push_token = SealedText("devices.push_token")
    push_token_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    _push_key: Mapped[bytes | None] = mapped_column("push_key", SealedColumn)
    push_key = SealedBytes("devices.push_key")
    refresh_jti: Mapped[str | None] = mapped_column(String(64))
    auth_method: Mapped[str] = mapped_column(String(16), default="totp")
    authenticated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_push_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_push_status: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="devices")


class OidcIdentity(Base):
    """A user's account at an OpenID provider (PSC or the IdP), linked once.

    Its tokens are kept sealed so that an `oauth_user` mailbox reaches IMAP and SMTP with
    its owner's own access token; `session_id` is the provider's `sid` of the last sign-in,
    which a back-channel logout names.
    """

    __tablename__ = "oidc_identities"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = public_id_column("oid")
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255))
    provider_sub: Mapped[str | None] = mapped_column(String(255), index=True)
    session_id: Mapped[str | None] = mapped_column(String(255))
    _access_token: Mapped[bytes | None] = mapped_column("access_token", SealedColumn)
    access_token = SealedText("oidc_identities.access_token")
    _refresh_token: Mapped[bytes | None] = mapped_column("refresh_token", SealedColumn)
    refresh_token = SealedText("oidc_identities.refresh_token")
    access_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OidcLogin(Base):
    """A sign-in under way: from /start, through the provider, to the app's one-time code.

    Only digests of the `state` and of the one-time code are stored; the nonce, the
    gateway's own PKCE verifier and what the provider said (`identity`) are sealed.
    """

    __tablename__ = "oidc_logins"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = public_id_column("olg")
    provider: Mapped[str] = mapped_column(String(32))
    state_digest: Mapped[str] = mapped_column(String(64), unique=True)
    _nonce: Mapped[bytes | None] = mapped_column("nonce", SealedColumn)
    nonce = SealedText("oidc_logins.nonce")
    _provider_verifier: Mapped[bytes | None] = mapped_column("provider_verifier", SealedColumn)
    provider_verifier = SealedText("oidc_logins.provider_verifier")
    app_challenge: Mapped[str] = mapped_column(String(128))
    app_redirect_uri: Mapped[str] = mapped_column(String(512))
    app_state: Mapped[str | None] = mapped_column(String(128))
    code_digest: Mapped[str | None] = mapped_column(String(64), unique=True)
    _identity: Mapped[bytes | None] = mapped_column("identity", SealedColumn)
    identity = SealedJSON("oidc_logins.identity")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Mailbox(Base):
    """An MSSanté mailbox on the operator's servers, and how we reach it."""

    __tablename__ = "mailboxes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = public_id_column("mbx")
    address: Mapped[str] = mapped_column(String(320), unique=True)
    kind: Mapped[str] = mapped_column(String(3))
    display_name: Mapped[str | None] = mapped_column(String(190))

    imap_host: Mapped[str] = mapped_column(String(255))
    imap_port: Mapped[int] = mapped_column(Integer)
    imap_security: Mapped[str] = mapped_column(String(8))
    imap_auth: Mapped[str] = mapped_column(String(16))
    imap_username: Mapped[str | None] = mapped_column(String(320))
    _imap_secret: Mapped[bytes | None] = mapped_column("imap_secret", SealedColumn)
    imap_secret = SealedText("mailboxes.imap_secret")
    _imap_certificate: Mapped[bytes | None] = mapped_column("imap_certificate", SealedColumn)
    imap_certificate = SealedBytes("mailboxes.imap_certificate")
    # xoauth2: an OAuth2 client-credentials grant at this token endpoint gives the bearer
    # token (imap_secret holds the client secret).
    imap_token_url: Mapped[str | None] = mapped_column(String(500))
    imap_client_id: Mapped[str | None] = mapped_column(String(255))
    smtp_host: Mapped[str | None] = mapped_column(String(255))
    smtp_port: Mapped[int | None] = mapped_column(Integer)
    smtp_security: Mapped[str | None] = mapped_column(String(8))
    smtp_auth: Mapped[str | None] = mapped_column(String(16))
    smtp_username: Mapped[str | None] = mapped_column(String(320))
    _smtp_secret: Mapped[bytes | None] = mapped_column("smtp_secret", SealedColumn)
    smtp_secret = SealedText("mailboxes.smtp_secret")
    max_message_bytes: Mapped[int | None] = mapped_column(Integer)

    sync_state: Mapped[str] = mapped_column(String(16), default="connecting")
    sync_detail: Mapped[str | None] = mapped_column(String(500))
    sync_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Bumped whenever connection settings change, so a worker restarts that mailbox's sync.
    settings_version: Mapped[int] = mapped_column(Integer, default=1)
    # Delta sync (GET /sync): the highest change number whose tombstones were purged; a
    # client state older than that cannot be answered.
    tombstones_purged_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64), index=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    members: Mapped[list[Membership]] = relationship(
        back_populates="mailbox", cascade="all, delete-orphan"
    )
    folders: Mapped[list[Folder]] = relationship(
        back_populates="mailbox", cascade="all, delete-orphan"
    )


class SchemaExpansion(Base):
    """An applied migration that only adds to the schema, and the revision it expands: the
    build at `expands` still runs on it (rolling upgrades, backend/storage/database.py)."""

    __tablename__ = "schema_expansions"

    revision: Mapped[str] = mapped_column(String(32), primary_key=True)
    expands: Mapped[str] = mapped_column(String(32))


class SyncWorkerBeat(Base):
    """A live sync worker, so the others know how many share the mailboxes (fair share)."""

    __tablename__ = "sync_workers"

    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    capacity: Mapped[int] = mapped_column(Integer)  # its --max-mailboxes
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Membership(Base):
    """Who may use a mailbox: its owner, or delegates (a secretariat's ORG mailbox)."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("mailbox_id", "user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    mailbox: Mapped[Mailbox] = relationship(back_populates="members")
    user: Mapped[User] = relationship(back_populates="memberships")


class Folder(Base):
    """Per-folder sync position (RFC 3501 UIDVALIDITY/UIDNEXT, RFC 7162 HIGHESTMODSEQ)."""

    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("mailbox_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str | None] = mapped_column(String(16))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    highest_modseq: Mapped[int | None] = mapped_column(BigInteger)
    # UIDNEXT when the folder's import began (first sync, UIDVALIDITY reset), committed with
    # UIDVALIDITY before the first batch: below it is old mail, never announced, even when
    # a killed worker's import resumes (backend/sync/catch_up.py).
    import_baseline_uid: Mapped[int | None] = mapped_column(BigInteger)
    # The server's STATUS at the last folder poll (backend/sync/folders.py), for every
    # folder, watched or not; and the admin's choice to watch it, NULL for the default.
    messages: Mapped[int | None] = mapped_column(Integer)
    unseen: Mapped[int | None] = mapped_column(Integer)
    watched: Mapped[bool | None] = mapped_column(Boolean)

    mailbox: Mapped[Mailbox] = relationship(back_populates="folders")


class Message(Base):
    """A cached envelope. The body stays on the IMAP server and is fetched on demand."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("folder_id", "uid"),
        Index("ix_messages_listing", "mailbox_id", "folder_id", "sort_key", "id"),
        Index("ix_messages_change_seq", "mailbox_id", "change_seq"),
        # Unread/total counts by index-only scans, whatever the mailbox size.
        Index("ix_messages_unread", "mailbox_id", "folder_id", "seen"),
        # Receipts (MDN/DSN) find their original by Message-ID without decrypting a row.
        Index("ix_messages_message_id_digest", "mailbox_id", "message_id_digest"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = public_id_column("msg")
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    uid: Mapped[int] = mapped_column(BigInteger)
    modseq: Mapped[int | None] = mapped_column(BigInteger)
    # Date header as UTC; listing order (newest first). Falls back to INTERNALDATE.
    sort_key: Mapped[datetime] = mapped_column(UTCDateTime)
    _subject: Mapped[bytes | None] = mapped_column("subject", SealedColumn)
    subject = SealedText("messages.subject")
    _sender: Mapped[bytes | None] = mapped_column("sender", SealedColumn)
    sender = SealedJSON("messages.sender")
    _recipients: Mapped[bytes | None] = mapped_column("recipients", SealedColumn)
    recipients = SealedJSON("messages.recipients")
    _message_id_header: Mapped[bytes | None] = mapped_column("message_id_header", SealedColumn)
    message_id_header = SealedText("messages.message_id")
    _mss_headers: Mapped[bytes | None] = mapped_column("mss_headers", SealedColumn)
    mss_headers = SealedJSON("messages.mss_headers")
    _patient: Mapped[bytes | None] = mapped_column("patient", SealedColumn)
    patient = SealedJSON("messages.patient")
    seen: Mapped[bool] = mapped_column(Boolean, default=False)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    answered: Mapped[bool] = mapped_column(Boolean, default=False)
    has_attachments: Mapped[bool] = mapped_column(Boolean, default=False)
    size: Mapped[int] = mapped_column(Integer, default=0)
    mdn_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    malformed: Mapped[bool] = mapped_column(Boolean, default=False)
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # HMAC of the Message-ID (encryption.lookup_digest), and the read/delivery receipts
    # received for this message: [{type, at, recipient}] (backend/sync/receipts.py).
    message_id_digest: Mapped[str | None] = mapped_column(String(64))
    _receipts: Mapped[bytes | None] = mapped_column("receipts", SealedColumn)
    receipts = SealedJSON("messages.receipts")


class MessageTombstone(Base):
    """A message gone from the cache, kept a while so GET /sync can report the delete."""

    __tablename__ = "message_tombstones"
    __table_args__ = (
        Index("ix_message_tombstones_change_seq", "mailbox_id", "change_seq"),
        Index("ix_message_tombstones_digest", "mailbox_id", "message_id_digest"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    public_id: Mapped[str] = mapped_column(String(32))
    change_seq: Mapped[int] = mapped_column(BigInteger)
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # Its Message-ID's keyed hash: the same message arriving in another folder is a move.
    message_id_digest: Mapped[str | None] = mapped_column(String(64))


class OutboxEvent(Base):
    """A push to send, written in the same transaction as the change it announces."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "done_at", "available_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The dispatcher holding it (backend.storage.liveness); NULL while it waits its turn.
    claimed_by: Mapped[str | None] = mapped_column(String(64))


class PushDelivery(Base):
    """One outbox event to one device: the unit that is sent exactly once."""

    __tablename__ = "push_deliveries"
    __table_args__ = (UniqueConstraint("outbox_id", "device_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RateLimitCounter(Base):
    """A rate limit's current window, when no Redis is configured or Redis is away.

    Keys name a limit and a keyed hash of the account or address, never a username.
    """

    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class RevokedToken(Base):
    """JWT blocklist when no Redis is configured; rows expire with the token."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AuditRecord(Base):
    """An append-only, hash-chained trail entry. Never message content: ids and actions only."""

    __tablename__ = "audit_records"
    __table_args__ = (
        # (…, occurred_at, id): the search's keyset order, so a page is one index range scan.
        Index("ix_audit_actor_time", "actor", "occurred_at", "id"),
        Index("ix_audit_mailbox_time", "mailbox", "occurred_at", "id"),
        Index("ix_audit_action_time", "action", "occurred_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    device: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(64))
    mailbox: Mapped[str | None] = mapped_column(String(32))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    """The single row every audit writer locks, so the chain stays linear across processes.

    After a retention purge it also keeps the anchor: the hash the first kept record
    points back to.
    """

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))
    anchor_id: Mapped[int] = mapped_column(BigInteger, default=0)
    anchor_hash: Mapped[str] = mapped_column(String(64))
    # The Merkle frontier (RFC 9162 subtree roots, JSON hex list) of the purged prefix,
    # and of the tree the last signed checkpoint covered: backend/audit/checkpoints.py.
    anchor_frontier: Mapped[str] = mapped_column(Text, server_default="[]")
    checkpoint_size: Mapped[int] = mapped_column(BigInteger, server_default="0")
    checkpoint_frontier: Mapped[str] = mapped_column(Text, server_default="[]")
    checkpoint_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RateCounter(Base):
    """Failure counters when Redis is not configured (embedded mode)."""

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(190), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


# An entry's words as a tsvector of exact lexemes (no parser, no dictionary: the importer
# folded them): the expression of PostgreSQL's GIN index, which a query must repeat.
DIRECTORY_WORDS_TSVECTOR = "array_to_tsvector(string_to_array(ltrim(words), ' '))"


class DirectoryEntry(Base):
    """One mailbox of the national MSSanté directory (the ANS daily extraction).

    Public data, so stored in clear. The whole table is replaced by each import
    (backend/directory/loading.py): ids are the line numbers of that import.
    """

    __tablename__ = "directory_entries"
    __table_args__ = (
        # PostgreSQL only: the entries having given words, intersected in the index.
        Index(
            "ix_directory_entries_words",
            text(DIRECTORY_WORDS_TSVECTOR),
            postgresql_using="gin",
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(3))  # PER | ORG
    address: Mapped[str] = mapped_column(String(254), index=True)
    domain: Mapped[str] = mapped_column(String(254))
    national_id: Mapped[str | None] = mapped_column(String(32))
    civility: Mapped[str | None] = mapped_column(String(32))
    last_name: Mapped[str | None] = mapped_column(String(200))
    first_name: Mapped[str | None] = mapped_column(String(200))
    profession: Mapped[str | None] = mapped_column(String(200))
    specialty: Mapped[str | None] = mapped_column(String(200))
    organisation: Mapped[str | None] = mapped_column(String(300))
    service: Mapped[str | None] = mapped_column(String(300))
    street: Mapped[str | None] = mapped_column(String(300))
    postcode: Mapped[str | None] = mapped_column(String(16))
    city: Mapped[str | None] = mapped_column(String(200))
    # " word word ...": every searchable word, accent-folded and lower-cased, each preceded
    # by a space, so `LIKE '% pref%'` is a word-prefix test (backend/directory/words.py).
    words: Mapped[str] = mapped_column(Text)


class DirectoryTerm(Base):
    """One searchable word of one directory entry: a prefix is a range scan of this index.

    `domain` is the entry's mail domain, so "my establishment first" is a range scan too.
    """

    __tablename__ = "directory_terms"
    __table_args__ = (Index("ix_directory_terms_domain_term", "domain", "term"),)

    term: Mapped[str] = mapped_column(String(64), primary_key=True)
    entry_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    domain: Mapped[str] = mapped_column(String(254))


class DirectoryWord(Base):
    """Each distinct word of the directory and how many entries have it, replaced with them.

    A search of several words reads here first: which typed prefix is rarest, and which
    words it stands for (backend/directory/search.py). PostgreSQL also has a GIN index
    over each entry's words (migration 0013, created by the importer on each new table),
    which intersects the entries of those words."""

    __tablename__ = "directory_words"

    term: Mapped[str] = mapped_column(String(64), primary_key=True)
    entries: Mapped[int] = mapped_column(Integer)
