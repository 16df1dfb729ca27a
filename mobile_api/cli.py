"""The operator command line of API.md: `flask --app mobile_api <command>`.

Secrets are read from standard input (or a hidden prompt), never taken as arguments:
arguments end up in shell history and in `ps` output.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from backend import errors
from backend.accounts import users
from backend.admin.audited_changes import (
    CLI,
    audit_change,
    member_granted,
    member_revoked,
    user_created,
    user_updated,
)
from backend.audit.trail import verify_chain
from backend.mailboxes import registry
from backend.storage.database import SchemaOutOfDate, require_current_schema, session_scope
from backend.storage.database import upgrade_schema as apply_migrations
from mobile_api.context import Services


def _services() -> Services:
    return current_app.extensions["estafette"]


def needs_current_schema(command: Callable) -> Callable:
    """Every command but `db upgrade` refuses to run on an out-of-date schema."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            require_current_schema(_services().engine)
        except SchemaOutOfDate as exc:
            raise click.ClickException(str(exc)) from None
        return command(*args, **kwargs)

    return wrapper


def _read_secret(from_stdin: bool, prompt: str) -> str:
    """One line from stdin with --*-stdin, else a hidden prompt on a terminal."""
    if from_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        value = click.prompt(prompt, hide_input=True, confirmation_prompt=True)
    else:
        raise click.UsageError("no terminal to prompt on: pass the secret on stdin with --*-stdin")
    if not value:
        raise click.UsageError(f"{prompt} is empty")
    return value


def _domain_errors(command: Callable) -> Callable:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except errors.EstafetteError as exc:
            extra = f" {exc.extra['errors']}" if "errors" in exc.extra else ""
            raise click.ClickException(f"{exc.detail}{extra}") from None

    return wrapper


db_cli = AppGroup("db", help="Database schema.")
users_cli = AppGroup("users", help="User accounts.")
mailboxes_cli = AppGroup("mailboxes", help="MSSanté mailboxes.")
audit_cli = AppGroup("audit", help="The traceability trail.")
certificates_cli = AppGroup("certificates", help="Client certificates and CAs.")
crl_cli = AppGroup("crl", help="Certificate revocation lists.")
backup_cli = AppGroup("backup", help="Backups of the PostgreSQL database.")
directory_cli = AppGroup("directory", help="The national MSSanté directory.")


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    apply_migrations(_services().engine)
    click.echo("database schema is up to date")


@users_cli.command("create")
@click.argument("username")
@click.option("--admin", is_flag=True, help="Grant the administrator role.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@needs_current_schema
@_domain_errors
def users_create(username: str, admin: bool, password_stdin: bool) -> None:
    """Create a user; they enrol their second factor at first sign-in."""
    password = _read_secret(password_stdin, "Password")
    with session_scope(_services().sessions) as db:
        user = users.create_user(db=db, username=username, password=password, is_admin=admin)
        public_id = user.public_id
        audit_change(db, _services().audit, user_created(user), actor=CLI)
    click.echo(f"created user {username} ({public_id})")


def _admin_user_change(username: str, patch: dict[str, Any]) -> None:
    from backend.admin import accounts as admin_accounts

    with session_scope(_services().sessions) as db:
        user = users.find_user(db=db, username=username)
        if user is None:
            raise click.ClickException(f"no such user {username}")
        details = admin_accounts.update_user(db=db, user=user, patch=patch)
        audit_change(db, _services().audit, user_updated(user, details), actor=CLI)
    click.echo(f"{username}: {details.get('sessions_revoked', 0)} sessions ended")


@users_cli.command("disable")
@click.argument("username")
@needs_current_schema
@_domain_errors
def users_disable(username: str) -> None:
    """Disable an account and end all its sessions at once."""
    _admin_user_change(username, {"disabled": True})


@users_cli.command("enable")
@click.argument("username")
@needs_current_schema
@_domain_errors
def users_enable(username: str) -> None:
    """Re-enable a disabled account."""
    _admin_user_change(username, {"disabled": False})


@users_cli.command("reset-otp")
@click.argument("username")
@needs_current_schema
@_domain_errors
def users_reset_otp(username: str) -> None:
    """Forget the user's TOTP (lost phone): sessions end, enrolment at next sign-in."""
    _admin_user_change(username, {"reset_otp": True})


@users_cli.command("sync-idp")
@click.option("--provider", help="Only this provider (a name in ESTAFETTE_OIDC_PROVIDERS).")
@needs_current_schema
@_domain_errors
def users_sync_idp(provider: str | None) -> None:
    """Import users and group-based mailbox grants from the IdP's directory (SCIM 2.0);
    disable leavers and end their sessions. Exits 1 if a directory could not be read."""
    from backend.accounts import directory_sync

    chosen = directory_sync.directory_providers(_services().settings.oidc_providers)
    if provider:
        chosen = [p for p in chosen if p.name == provider]
    if not chosen:
        raise click.ClickException("no provider with a scim_url to follow")
    for settings in chosen:
        with session_scope(_services().sessions) as db:
            report = directory_sync.sync_directory(
                db=db, trail=_services().audit, settings=settings, actor=CLI
            )
        click.echo(
            f"{settings.name}: {report.created} created, {report.enabled} enabled, "
            f"{report.disabled} disabled, {report.granted} granted, {report.revoked} revoked"
        )


@users_cli.command("reset-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the new password from stdin.")
@needs_current_schema
@_domain_errors
def users_reset_password(username: str, password_stdin: bool) -> None:
    """Set a new password; every session of the user ends at once."""
    _admin_user_change(username, {"password": _read_secret(password_stdin, "New password")})


@mailboxes_cli.command("create")
@click.argument("address")
@click.option("--kind", type=click.Choice(registry.KINDS), required=True)
@click.option("--imap-host", required=True)
@click.option("--imap-port", type=int, required=True)
@click.option("--security", type=click.Choice(registry.SECURITY), required=True)
@click.option("--auth", type=click.Choice(registry.AUTH_MODES), required=True)
@click.option("--username", help="IMAP login (the master user for --auth master).")
@click.option("--secret-stdin", is_flag=True, help="Read the password or .p12 passphrase.")
@click.option(
    "--certificate",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Client certificate (.p12) for --auth certificate.",
)
@click.option("--token-url", help="OAuth2 token endpoint for --auth xoauth2.")
@click.option("--client-id", help="OAuth2 client id for --auth xoauth2 (secret on stdin).")
@click.option("--display-name")
@needs_current_schema
@_domain_errors
def mailboxes_create(
    address: str,
    kind: str,
    imap_host: str,
    imap_port: int,
    security: str,
    auth: str,
    username: str | None,
    secret_stdin: bool,
    certificate: Path | None,
    token_url: str | None,
    client_id: str | None,
    display_name: str | None,
) -> None:
    """Register an MSSanté mailbox; the sync worker picks it up on its next heartbeat.

    The secret on stdin is the password (password, master), the client secret (xoauth2)
    or the .p12 passphrase (certificate).
    """
    if auth == "xoauth2" and not (token_url and client_id):
        raise click.UsageError("--auth xoauth2 needs --token-url and --client-id")
    needs_secret = secret_stdin or auth in ("password", "master", "xoauth2")
    secret = _read_secret(secret_stdin, "Secret") if needs_secret else None
    from backend.admin import mailboxes as admin_mailboxes

    with session_scope(_services().sessions) as db:
        mailbox, change = admin_mailboxes.register_mailbox(
            db=db,
            address=address,
            kind=kind,
            display_name=display_name,
            imap=registry.ServerSettings(
                imap_host, imap_port, security, auth, username, secret, token_url, client_id
            ),
            certificate=certificate.read_bytes() if certificate else None,
        )
        public_id = mailbox.public_id
        audit_change(db, _services().audit, change, actor=CLI)
    click.echo(f"created mailbox {address} ({public_id})")


@mailboxes_cli.command("grant")
@click.argument("address")
@click.argument("username")
@click.option("--role", type=click.Choice(registry.ROLES), required=True)
@needs_current_schema
@_domain_errors
def mailboxes_grant(address: str, username: str, role: str) -> None:
    """Make a user the owner or a delegate of a mailbox."""
    from backend.admin import mailboxes as admin_mailboxes

    with session_scope(_services().sessions) as db:
        mailbox = registry.find_mailbox(db=db, address=address)
        user = users.find_user(db=db, username=username)
        if mailbox is None or user is None:
            raise click.ClickException("no such mailbox or user")
        previous = admin_mailboxes.set_member(db=db, mailbox=mailbox, user=user, role=role)
        audit_change(
            db, _services().audit, member_granted(mailbox, user, previous, role), actor=CLI
        )
    click.echo(f"{username} is now {role} of {address}")


@mailboxes_cli.command("revoke")
@click.argument("address")
@click.argument("username")
@needs_current_schema
@_domain_errors
def mailboxes_revoke(address: str, username: str) -> None:
    """Remove a user from a mailbox: their access and pushes for it stop at once."""
    from backend.admin import mailboxes as admin_mailboxes

    with session_scope(_services().sessions) as db:
        mailbox = registry.find_mailbox(db=db, address=address)
        user = users.find_user(db=db, username=username)
        if mailbox is None or user is None:
            raise click.ClickException("no such mailbox or user")
        role = admin_mailboxes.remove_member(db=db, mailbox=mailbox, user=user)
        audit_change(db, _services().audit, member_revoked(mailbox, user, role), actor=CLI)
    click.echo(f"{username} no longer has access to {address}")


@certificates_cli.command("check")
@needs_current_schema
def certificates_check() -> None:
    """List every client certificate, CA and CRL; exit 1 if one is expired or unusable."""
    from backend.certificates import inventory
    from backend.crl import crl_files

    services = _services()
    settings = services.settings
    with services.sessions() as db:
        statuses = inventory(
            db=db,
            ca_bundle=settings.ca_bundle,
            card_ca_bundle=settings.card_ca_bundle,
            crl_paths=crl_files(settings.crl_files, settings.var_dir),
        )
    for status in statuses:
        expiry = status.not_after.date().isoformat() if status.not_after else "-"
        click.echo(
            f"{status.status:8} {status.id:32} {expiry} {status.days_left} days {status.subject}"
        )
    if any(status.status == "error" for status in statuses):
        sys.exit(1)


@crl_cli.command("refresh")
def crl_refresh() -> None:
    """Download the CRLs (ESTAFETTE_CRL_URLS and the CAs' distribution points) into var/crl/.

    Exit 1 if one could not be fetched: the previous copy stays until its nextUpdate.
    """
    from cryptography import x509

    from backend import crl

    settings = _services().settings
    bundles = [b for b in (settings.card_ca_bundle, settings.ca_bundle) if b is not None]
    certificates = [c for b in bundles for c in x509.load_pem_x509_certificates(b.read_bytes())]
    urls = [*settings.crl_urls, *crl.distribution_points(certificates)]
    result = crl.refresh(urls, settings.var_dir, configured=settings.crl_files)
    for url in result.written:
        click.echo(f"ok      {url}")
    for url in result.failed:
        click.echo(f"FAILED  {url}", err=True)
    if not urls:
        click.echo("no CRL URL configured or named by the CAs: set ESTAFETTE_CRL_URLS", err=True)
    click.echo(f"combined CRL file: {crl.crl_dir(settings.var_dir) / crl.COMBINED_NAME}")
    if result.failed:
        sys.exit(1)


@directory_cli.command("import")
@click.argument("source", required=False)
@needs_current_schema
def directory_import(source: str | None) -> None:
    """Load the ANS MSSanté extraction (a FILE or URL; default ESTAFETTE_DIRECTORY_URL).

    Searches keep the previous directory until the new one is swapped in. Malformed lines
    are counted and reported, never fatal. Exit 1 if nothing could be loaded.
    """
    from backend.directory import download, extraction, loading

    services = _services()
    tally = extraction.Tally()
    try:
        with download.opened_source(source, services.settings) as lines:
            report = loading.replace_directory(
                services.engine, extraction.read_entries(lines, tally), tally
            )
    except (download.DownloadFailed, loading.ImportRunning, UnicodeError) as exc:
        raise click.ClickException(f"directory not updated: {exc}") from None
    services.audit.record(
        "directory.import",
        actor=CLI,
        details={
            "entries": report.entries,
            "duplicates": report.duplicates,
            "malformed": report.malformed_total,
        },
    )
    click.echo(
        f"directory: {report.entries} entries loaded in {report.seconds:.1f} s; "
        f"{report.duplicates} duplicate addresses skipped; "
        f"{report.malformed_total} malformed lines"
    )
    for reason, count in sorted(report.malformed.items()):
        click.echo(f"  malformed ({reason}): {count}", err=True)
    if report.first_malformed_lines:
        lines_text = ", ".join(str(n) for n in report.first_malformed_lines)
        click.echo(f"  first malformed lines: {lines_text}", err=True)


@audit_cli.command("verify")
@needs_current_schema
def audit_verify() -> None:
    """Recompute the hash chain and the signed checkpoints' roots; exit 1 on any mismatch."""
    from backend.audit.anchoring import public_key_of, verify_checkpoints
    from backend.audit.checkpoints import read_checkpoints
    from backend.audit.verify_status import write_status

    settings = _services().settings
    try:
        checkpoints = read_checkpoints(settings.audit_checkpoint_file)
    except ValueError as exc:
        write_status(settings.var_dir, ok=False, records=0)
        click.echo(f"audit checkpoints UNREADABLE: {exc}", err=True)
        sys.exit(1)
    with _services().sessions() as db:
        result = verify_chain(db)
        anchored = verify_checkpoints(db, checkpoints, public_key_of(settings))
    # The verdict the api's /metrics exports (estafette_audit_chain_verified).
    write_status(settings.var_dir, ok=result.ok and anchored.ok, records=result.records)
    if not result.ok:
        click.echo(f"audit trail BROKEN at record {result.first_bad}: {result.reason}", err=True)
    if not anchored.ok:
        click.echo(f"audit trail does NOT MATCH its checkpoints: {anchored.reason}", err=True)
    if not (result.ok and anchored.ok):
        sys.exit(1)
    click.echo(
        f"audit trail intact: {result.records} records; "
        f"{anchored.checked} signed checkpoints match, up to record {anchored.tree_size}"
    )


@audit_cli.command("checkpoint")
@click.option("--force", is_flag=True, help="Sign a fresh head even with no new record.")
@needs_current_schema
def audit_checkpoint(force: bool) -> None:
    """Sign the current tree head now (the systemd timer's job: covers quiet hours)."""
    from backend.audit.anchoring import TreeUnavailable

    try:
        checkpoint = _services().audit.checkpoints.write(when="always" if force else "uncovered")
    except TreeUnavailable as exc:
        click.echo(f"audit checkpoint REFUSED: {exc}", err=True)
        sys.exit(1)
    if checkpoint is None:
        click.echo("no new records since the last checkpoint")
        return
    click.echo(f"checkpoint: {checkpoint.tree_size} records, root {checkpoint.root_hash.hex()}")


@audit_cli.command("public-key")
def audit_public_key() -> None:
    """Print the checkpoint signing key's public half (PEM), for whoever checks proofs."""
    from backend.audit.anchoring import public_key_of
    from backend.audit.checkpoints import public_pem

    click.echo(public_pem(public_key_of(_services().settings)), nl=False)


@audit_cli.command("prove")
@click.argument("record_id", type=click.IntRange(min=1))
@needs_current_schema
def audit_prove(record_id: int) -> None:
    """Print a JSON inclusion proof of one record in the latest signed checkpoint."""
    import json

    from backend.audit.anchoring import TreeUnavailable, prove_inclusion
    from backend.audit.checkpoints import read_checkpoints

    services = _services()
    checkpoints = read_checkpoints(services.settings.audit_checkpoint_file)
    if not checkpoints or checkpoints[-1].tree_size < record_id:
        services.audit.checkpoints.write(when="always")  # not signed yet: sign it now
        checkpoints = read_checkpoints(services.settings.audit_checkpoint_file)
    latest = max(checkpoints, key=lambda c: c.tree_size)
    try:
        with services.sessions() as db:
            proof = prove_inclusion(db, record_id, latest)
    except TreeUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(proof, indent=1))


@audit_cli.command("check-proof")
@click.argument("proof_file", type=click.File("r"))
@click.option(
    "--public-key",
    "public_key_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
def audit_check_proof(proof_file: Any, public_key_file: Path) -> None:
    """Check a proof from `audit prove` with the public key alone (no database needed)."""
    import json

    from backend.audit.checkpoints import check_proof, load_public_key

    try:
        proof = json.load(proof_file)
    except ValueError as exc:
        raise click.ClickException(f"not a JSON proof: {exc}") from None
    ok, reason = check_proof(proof, load_public_key(public_key_file))
    if not ok:
        click.echo(f"proof REJECTED: {reason}", err=True)
        sys.exit(1)
    click.echo(f"proof valid: {reason}")


@audit_cli.command("purge")
@needs_current_schema
def audit_purge() -> None:
    """Delete records past ESTAFETTE_AUDIT_RETENTION_DAYS, keeping an anchor so verify passes."""
    from backend.audit.retention import ChainBroken, purge_expired

    services = _services()
    try:
        result = purge_expired(
            services.sessions, services.audit, retention_days=services.settings.audit_retention_days
        )
    except ChainBroken as exc:
        click.echo(f"audit purge REFUSED: {exc}", err=True)
        sys.exit(1)
    if result is None:
        click.echo("nothing to purge")
        return
    click.echo(
        f"purged {result.purged} records before {result.cutoff.isoformat(timespec='seconds')}; "
        f"anchor {result.anchor_id} {result.anchor_hash}"
    )


@audit_cli.command("export")
@click.option("--actor")
@click.option("--action", help="An action, or a prefix ending in * (admin.*).")
@click.option("--mailbox")
@click.option("--since", type=click.DateTime(), help="UTC")
@click.option("--until", type=click.DateTime(), help="UTC")
@click.option("--output", type=click.File("w"), default="-", show_default=True)
@needs_current_schema
def audit_export(
    actor: str | None,
    action: str | None,
    mailbox: str | None,
    since: Any,
    until: Any,
    output: Any,
) -> None:
    """Write matching records as a FHIR R4 Bundle of AuditEvents (JSON)."""
    import json
    from datetime import UTC

    from backend.audit import fhir
    from backend.audit.search import AuditQuery, search

    query = AuditQuery(
        actor=actor,
        action=action,
        mailbox=mailbox,
        since=since.replace(tzinfo=UTC) if since else None,
        until=until.replace(tzinfo=UTC) if until else None,
    )
    records, after = [], None
    with _services().sessions() as db:
        while True:
            page, after = search(db=db, query=query, limit=1000, after=after)
            records.extend(page)
            if after is None:
                break
        json.dump(fhir.bundle(records), output, indent=1)
    output.write("\n")
    _services().audit.record(
        "audit.export", actor=CLI, target_type="audit", details={"records": len(records)}
    )


@backup_cli.command("verify")
@click.argument("dump", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def backup_verify(dump: Path) -> None:
    """Restore a pg_dump into a scratch database and check it; exit 1 if it would not serve.

    Checks: the schema at a migration this version runs on, the audit chain intact, and a
    sealed value (a cached envelope) that opens with the configured ESTAFETTE_DATA_KEY.
    The scratch database is made on the configured server (CREATEDB needed) and dropped."""
    from backend.storage.backup import BackupError, verify_backup

    url = _services().settings.database_url
    try:
        report = verify_backup(dump, url)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    for finding in report.findings:
        click.echo(f"{'ok' if finding.ok else 'FAILED':7} {finding.check}: {finding.detail}")
    if not report.ok:
        sys.exit(1)
    click.echo(f"backup {dump.name} restores and serves")


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@click.command("sync")
@click.option("--pool-size", type=int, default=16, show_default=True)
@click.option(
    "--max-mailboxes",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Lease at most this many mailboxes; other workers take the rest.",
)
@needs_current_schema
def sync_command(pool_size: int, max_mailboxes: int) -> None:
    """Run a sync worker: IMAP IDLE on the mailboxes it leases."""
    from backend.metrics_endpoint import serve_metrics
    from backend.sync.process import run_sync

    services = _services()
    stop = _stop_on_signals()
    serve_metrics(services.settings, healthy=lambda: not stop.is_set())
    run_sync(
        services.sessions,
        services.settings,
        stop,
        pool_size=pool_size,
        max_mailboxes=max_mailboxes,
    )


@click.command("push")
@needs_current_schema
def push_command() -> None:
    """Run a push dispatcher: drain the outbox into FCM and the browsers' push services."""
    from backend.metrics_endpoint import serve_metrics
    from backend.push.dispatcher import Dispatcher
    from backend.push.routing import create_senders

    services = _services()
    stop = _stop_on_signals()
    serve_metrics(services.settings, healthy=lambda: not stop.is_set())
    sender = create_senders(services.settings)
    try:
        Dispatcher(
            services.sessions,
            sender,
            lease_seconds=services.settings.push_lease_seconds,
            previews=services.settings.push_previews,
            stale_seconds=services.settings.push_stale_seconds,
        ).run(stop)
    finally:
        sender.close()


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--threads", type=int, default=8, show_default=True)
@needs_current_schema
def serve_command(host: str, port: int, threads: int) -> None:
    """The embedded gateway: api (gunicorn), sync and push together."""
    from mobile_api.serve import serve

    serve(current_app._get_current_object(), host=host, port=port, threads=threads)


def register_commands(app: Flask) -> None:
    from mobile_api.key_commands import keys_cli

    app.cli.add_command(keys_cli)
    for command in (
        db_cli,
        users_cli,
        mailboxes_cli,
        audit_cli,
        certificates_cli,
        crl_cli,
        backup_cli,
        directory_cli,
        sync_command,
        push_command,
        serve_command,
    ):
        app.cli.add_command(command)
