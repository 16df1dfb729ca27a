"""A real, throwaway Dovecot for tests, benchmarks and the `make run` demo.

Why: the gateway's hard parts (IDLE latency, reconnects after a restart, TLS,
master users, client certificates, XOAUTH2, thousands of sessions) only show
up against a real IMAP server. DovecotServer renders infra/dovecot/*.tmpl into
a temporary directory, runs `dovecot -F` there on loopback ports and tears it
down again, as root (CI) or as a normal user.

    with DovecotServer(tmp_path) as server:
        server.add_user("alice@example.org", "secret")
        server.deliver("alice@example.org", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
        client = IMAPClient(server.host, server.imaps_port,
                            ssl_context=server.client_ssl_context())
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import re
import resource
import secrets
import shutil
import signal
import smtplib
import socket
import ssl
import stat
import string
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from types import TracebackType

from devtools.dovecot.relay import RelayedMessage, RelaySink
from devtools.dovecot.users import DovecotUsers, _User, hash_password
from devtools.pki import CertificateAuthority, IssuedCertificate, make_ca

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "infra" / "dovecot"
DEFAULT_BINARY = "/usr/sbin/dovecot"
INSTALL_HINT = "apt-get install dovecot-imapd dovecot-lmtpd dovecot-submissiond"
SIEVE_PACKAGE = "dovecot-sieve"
SIEVE_PLUGIN = Path("/usr/lib/dovecot/modules/lib90_sieve_plugin.so")
# Which package brings which helper (Debian layout: /usr/lib/dovecot/<name>).
REQUIRED_HELPERS = {"imap": "dovecot-imapd", "imap-login": "dovecot-imapd", "lmtp": "dovecot-lmtpd"}
SUBMISSION_HELPERS = {
    "submission": "dovecot-submissiond",
    "submission-login": "dovecot-submissiond",
}
# Unix socket paths are limited to 107 bytes; Dovecot adds up to ~30 to base_dir.
MAX_BASE_DIR_LENGTH = 70
# DESIGN.md: each IDLE session holds one inotify instance of the mail uid.
INOTIFY_INSTANCES_PATH = Path("/proc/sys/fs/inotify/max_user_instances")
WANTED_INOTIFY_INSTANCES = 4096
LOG_TAIL_LINES = 40
# How long stop() lets the master exit on its own after its children got SIGTERM.
MASTER_EXIT_WAIT = 0.3

_running_servers: weakref.WeakSet[DovecotServer] = weakref.WeakSet()


class DovecotError(RuntimeError):
    """Dovecot could not be started, stopped or used; the message says why."""


class DeliveryError(DovecotError):
    """LMTP refused a message (unknown user, over quota, malformed...)."""


@dataclass(frozen=True)
class _Identity:
    """Which system users run the instance, decided once from our own uid."""

    is_root: bool
    internal_user: str
    internal_group: str
    login_user: str
    mail_uid: int
    mail_gid: int


@dataclass(frozen=True)
class _Ports:
    imap: int
    imaps: int
    lmtp: int
    submission: int
    submissions: int
    relay: int


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def _identity() -> _Identity:
    """As root use Debian's dovecot/dovenull users; otherwise run everything as us."""
    if os.geteuid() != 0:
        try:
            me = pwd.getpwuid(os.geteuid())
            group = grp.getgrgid(os.getegid()).gr_name
        except KeyError:
            raise DovecotError(f"uid {os.geteuid()} needs a name: Dovecot runs as a user") from None
        return _Identity(False, me.pw_name, group, me.pw_name, me.pw_uid, os.getegid())
    try:
        internal = pwd.getpwnam("dovecot")
        pwd.getpwnam("dovenull")
    except KeyError:
        raise DovecotError(f"system users dovecot/dovenull are missing: {INSTALL_HINT}") from None
    group = grp.getgrgid(internal.pw_gid).gr_name
    return _Identity(True, "dovecot", group, "dovenull", internal.pw_uid, internal.pw_gid)


def pick_loopback_host() -> str:
    """127.0.0.2 when available, so that Dovecot does not treat clients as local.

    Why: Dovecot allows plaintext login without TLS whenever the local and remote
    addresses are equal. Clients reaching 127.0.0.2 come from 127.0.0.1, so the
    plain port really demands STARTTLS, as an MSSanté operator does.
    """
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.2", 0))
        except OSError:
            return "127.0.0.1"
    return "127.0.0.2"


PORT_ATTEMPTS = 3  # starts with freshly chosen ports, should one be taken meanwhile


def _free_ports(host: str, count: int) -> list[int]:
    """Ask the kernel for distinct free ports (all held open until all are known)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _render(template_name: str, **values: object) -> str:
    template = string.Template((TEMPLATE_DIR / template_name).read_text())
    return template.substitute({k: str(v) for k, v in values.items()})


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _raise_inotify_limit() -> None:
    """Let thousands of IDLE sessions use inotify instead of 30 s polling (root only)."""
    try:
        current = int(INOTIFY_INSTANCES_PATH.read_text())
        if current < WANTED_INOTIFY_INSTANCES:
            INOTIFY_INSTANCES_PATH.write_text(str(WANTED_INOTIFY_INSTANCES))
    except (OSError, ValueError):
        pass  # read-only /proc/sys in some containers: Dovecot falls back to polling


def _raise_fd_limit(wanted: int) -> None:
    """Raise our soft RLIMIT_NOFILE; Dovecot (our child) and bench clients inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _process_group(pgid: int) -> dict[int, str]:
    """Live (non-zombie) processes of a process group, pid -> command, from /proc."""
    members = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may itself contain spaces.
        head, _, tail = raw.rpartition(")")
        fields = tail.split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members[int(entry.name)] = head.partition("(")[2]
    return members


def _process_group_members(pgid: int) -> list[int]:
    return sorted(_process_group(pgid))


def _message_bytes(message: bytes | str | Message) -> bytes:
    """Accept raw bytes, text or an email.message; send CRLF line endings."""
    if isinstance(message, Message):
        data = message.as_bytes()
    elif isinstance(message, str):
        data = message.encode()
    else:
        data = bytes(message)
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


class DovecotServer(DovecotUsers):
    """One Dovecot instance living under `root`, on loopback ports.

    Usable as a context manager (start on enter, stop on exit). Ports, users,
    mail and the CA survive stop()/start(), so restart() looks to clients like
    an operator's server going down and coming back at the same address.

    Options: `ca` signs the server certificate (a fresh one by default);
    `client_cas` are trusted for client certificates / SASL EXTERNAL (default
    [ca]; [] turns EXTERNAL off); `oauth2_introspection_url` turns XOAUTH2 and
    OAUTHBEARER on; `submission=None` enables submission when installed;
    `host=None` picks 127.0.0.2 when possible (see pick_loopback_host).
    The relay sink behind submission advertises DSN (RFC 3461) when `relay_dsn`, and
    answers 550 to RCPT for the addresses in `relay_refuses`; both may change while running.
    `notify=False` turns the mailbox list index off, and with it NOTIFY (RFC 5465), as on
    an operator's server without it.
    """

    def __init__(
        self,
        root: Path,
        *,
        ca: CertificateAuthority | None = None,
        max_connections: int = 1000,
        host: str | None = None,
        client_cas: list[CertificateAuthority] | None = None,
        cert_username_field: str = "commonName",
        oauth2_introspection_url: str | None = None,
        oauth2_username_attribute: str = "username",
        submission: bool | None = None,
        relay_dsn: bool = False,
        notify: bool = True,
        max_connections_per_user: int = 50,
        idle_check_interval: int = 2,
        start_timeout: float = 30.0,
        binary: str | os.PathLike[str] = DEFAULT_BINARY,
        debug: bool = False,
    ) -> None:
        self.root = Path(root).resolve()
        self.ca = ca or make_ca("Estafette Dovecot Test CA", organization="Estafette tests")
        self.client_cas = list(client_cas) if client_cas is not None else [self.ca]
        self.cert_username_field = cert_username_field
        self.oauth2_introspection_url = oauth2_introspection_url
        self.oauth2_username_attribute = oauth2_username_attribute
        self.max_connections = max_connections
        self.max_connections_per_user = max_connections_per_user
        self.idle_check_interval = idle_check_interval
        self.start_timeout = start_timeout
        self.binary = Path(binary)
        self.debug = debug
        self._host = host or pick_loopback_host()
        self._submission = submission
        self.relay_dsn = relay_dsn
        self.notify = notify
        self.relay_refuses: set[str] = set()
        self._identity = _identity()
        self._users: dict[str, _User] = {}
        self._ports: _Ports | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._base_dir: Path | None = None
        self._relay: RelaySink | None = None
        self._relayed: list[RelayedMessage] = []
        self._relayed_lock = threading.Lock()
        self._owner_pid = os.getpid()
        self._users_lock = threading.Lock()
        self.master_user = "estafette-master"
        self.server_certificate: IssuedCertificate | None = None
        self.master_password = secrets.token_urlsafe(18)

    # -- paths and addresses ------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    def _require_ports(self) -> _Ports:
        if self._ports is None:
            raise DovecotError("ports are chosen by start(); call start() first")
        return self._ports

    @property
    def imaps_port(self) -> int:
        """IMAP with implicit TLS (993-style)."""
        return self._require_ports().imaps

    @property
    def imap_port(self) -> int:
        """IMAP where STARTTLS is required before any login (143-style)."""
        return self._require_ports().imap

    @property
    def lmtp_port(self) -> int:
        return self._require_ports().lmtp

    @property
    def submission_port(self) -> int | None:
        """SMTP submission with STARTTLS (587-style), or None when not installed."""
        return self._require_ports().submission if self.submission_enabled else None

    @property
    def submissions_port(self) -> int | None:
        """SMTP submission with implicit TLS (465-style), or None."""
        return self._require_ports().submissions if self.submission_enabled else None

    @property
    def submission_enabled(self) -> bool:
        if self._submission is None:
            return not self._missing_helpers(SUBMISSION_HELPERS)
        return self._submission

    @property
    def conf_dir(self) -> Path:
        return self.root / "conf"

    @property
    def config_path(self) -> Path:
        return self.conf_dir / "dovecot.conf"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def ca_cert_path(self) -> Path:
        """PEM of the CA (chain) that signed the server certificate, each with its CRL."""
        return self.tls_dir / "ca.pem"

    @property
    def client_ca_path(self) -> Path:
        """The CA certificates and CRLs that client certificates are checked against."""
        return self.tls_dir / "client-ca.pem"

    @property
    def mail_root(self) -> Path:
        return self.root / "mail"

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def stderr_path(self) -> Path:
        return self.root / "dovecot.stderr"

    @property
    def users_dir(self) -> Path:
        """One passwd-file per user: user:{SSHA512}hash:uid:gid::home::"""
        return self.conf_dir / "users.d"

    def user_file(self, username: str) -> Path:
        return self.users_dir / username.lower()

    @property
    def master_users_file(self) -> Path:
        return self.conf_dir / "master-users"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The Dovecot master's pid (also its process group id)."""
        return self._proc.pid if self.running and self._proc else None

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(self._users)

    @property
    def relayed(self) -> list[RelayedMessage]:
        """Messages that went out through submission, oldest first."""
        with self._relayed_lock:
            return list(self._relayed)

    def home(self, username: str) -> Path:
        return self.mail_root / username.lower()

    @property
    def sieve_enabled(self) -> bool:
        """Pigeonhole's Sieve plugin is installed (Debian: dovecot-sieve)."""
        return SIEVE_PLUGIN.exists()

    def set_sieve(self, username: str, script: str) -> None:
        """The user's server-side rules, run at each LMTP delivery (fileinto files mail).

        Compiled by Dovecot at the next delivery; a script that does not compile
        delivers to INBOX, as Pigeonhole does, and says why in the Dovecot log."""
        if not self.sieve_enabled:
            raise DovecotError(f"Sieve is not installed: apt-get install {SIEVE_PACKAGE}")
        home = self.home(username)
        path = home / ".dovecot.sieve"
        path.write_text(script)
        stat = home.stat()
        if os.geteuid() == 0:
            os.chown(path, stat.st_uid, stat.st_gid)

    def client_ssl_context(self, client_cert: IssuedCertificate | None = None) -> ssl.SSLContext:
        """A TLS context that trusts only the harness CA (and presents a cert if given)."""
        context = ssl.create_default_context(cafile=str(self.ca_cert_path))
        if client_cert is not None:
            cert_path = self.tls_dir / "clients" / f"{client_cert.serial_number:x}.pem"
            cert_path.parent.mkdir(parents=True, exist_ok=True)
            client_cert.write_pem(cert_path, with_chain=True)
            context.load_cert_chain(cert_path, cert_path.with_suffix(".key"))
        return context

    def __enter__(self) -> DovecotServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Render the config, run Dovecot and wait until IMAPS greets us (or raise)."""
        if self.running:
            return
        self._check_installation()
        if self._identity.is_root:
            _raise_inotify_limit()
        _raise_fd_limit(4 * self.max_connections + 1024)
        # Free ports are only free when asked: another process may take one before Dovecot
        # (or the relay) binds it. Ports of our own choosing are then chosen again; ports
        # kept from an earlier start (a restart keeps its clients' addresses) never are.
        chosen_here = self._ports is None
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self._prepare_filesystem()
            self._write_tls_files()
            if self._ports is None:
                self._ports = _Ports(*_free_ports(self._host, 6))
            try:
                if self.submission_enabled:
                    self._start_relay()
                self._write_config()
                self._spawn()
                self._wait_until_ready()
                break
            except DovecotError as exc:
                self.stop()
                taken = "Address already in use" in str(exc)
                if not (chosen_here and taken) or attempt == PORT_ATTEMPTS:
                    raise
                self._ports = None
            except BaseException:
                self.stop()
                raise
        self._owner_pid = os.getpid()
        _running_servers.add(self)

    def stop(self, *, graceful: bool = False) -> None:
        """Stop the whole instance: master, every child process, the relay sink.

        By default clients just see their connection drop, as after a crash.
        graceful=True first kicks every session, so IMAP clients receive
        "* BYE Server shutting down." like after an orderly restart.
        """
        if graceful and self.running:
            self._kick_everyone()
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate_process_group(proc)
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        if self._base_dir is not None:
            # A killed master leaves its pid file; a recycled pid could then
            # look like "Dovecot is already running" at the next start.
            (self._base_dir / "master.pid").unlink(missing_ok=True)
            if self._base_dir != self.root / "run":
                shutil.rmtree(self._base_dir, ignore_errors=True)
        self._base_dir = None
        _running_servers.discard(self)

    def _kick_everyone(self, timeout: float = 5.0) -> None:
        """Have Dovecot end every mail session itself, then wait for them to go."""
        with contextlib.suppress(DovecotError, OSError, subprocess.SubprocessError):
            self.doveadm("kick", "*")
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        sessions = {"imap", "submission"}
        while sessions & set(_process_group(self._proc.pid).values()):
            if time.monotonic() > deadline:
                return  # the normal stop below ends them anyway
            time.sleep(0.02)  # polling /proc, bounded by the deadline above

    def restart(self, *, graceful: bool = False) -> None:
        """Stop and start again on the same ports with the same mail and users."""
        self.stop(graceful=graceful)
        self.start()

    # -- start-up steps --------------------------------------------------------

    def _missing_helpers(self, helpers: dict[str, str]) -> set[str]:
        libexec = self.binary.parent.parent / "lib" / "dovecot"
        if not libexec.is_dir():
            return set()  # not a Debian layout: let Dovecot itself complain
        return {pkg for name, pkg in helpers.items() if not (libexec / name).exists()}

    def _check_installation(self) -> None:
        if not self.binary.exists():
            raise DovecotError(f"dovecot binary not found at {self.binary}: {INSTALL_HINT}")
        missing = self._missing_helpers(REQUIRED_HELPERS)
        if self._submission:
            missing |= self._missing_helpers(SUBMISSION_HELPERS)
        if missing:
            packages = " ".join(sorted(missing))
            raise DovecotError(f"Dovecot is incomplete, missing: apt-get install {packages}")

    def _prepare_filesystem(self) -> None:
        for directory in (self.root, self.conf_dir, self.tls_dir, self.mail_root):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o755)
        (self.root / "state").mkdir(exist_ok=True)
        if self._identity.is_root:
            self._make_ancestors_traversable()
        self._base_dir = self._choose_base_dir()
        self.users_dir.mkdir(exist_ok=True)
        self.users_dir.chmod(0o755)
        master_line = f"{self.master_user}:{hash_password(self.master_password)}\n"
        self._write_auth_file(self.master_users_file, master_line, 0)
        self.stderr_path.write_bytes(b"")

    def _make_ancestors_traversable(self) -> None:
        """Dovecot's auth and mail processes are not root: they must reach our files.

        pytest's basetemp is 0700, so add o+x (traverse, not list) to parents we own.
        """
        for parent in self.root.parents:
            info = parent.stat()
            if info.st_mode & stat.S_IXOTH:
                continue
            if info.st_uid != os.geteuid():
                raise DovecotError(f"{parent} is not traversable by Dovecot's users")
            parent.chmod(stat.S_IMODE(info.st_mode) | stat.S_IXOTH)

    def _choose_base_dir(self) -> Path:
        candidate = self.root / "run"
        if len(str(candidate)) > MAX_BASE_DIR_LENGTH:
            candidate = Path(tempfile.mkdtemp(prefix="estafette-dovecot-"))
        candidate.mkdir(exist_ok=True)
        candidate.chmod(0o755)
        return candidate

    def _write_tls_files(self) -> None:
        if self.server_certificate is None:  # kept across restarts, as a real server does
            ips = dict.fromkeys(["127.0.0.1", "::1", self._host])
            self.server_certificate = self.ca.issue_server_cert(ip_addresses=ips)
        self.server_certificate.write_pem(self.tls_dir / "server.pem", with_chain=True)
        self.publish_crls()

    def publish_crls(self) -> None:
        """Write the CA files again with fresh CRLs, so revocations made meanwhile apply.

        The gateway reads `ca_cert_path` at its next connection; Dovecot reads the client
        CAs' CRLs at its next start.
        """
        # The CA's CRL rides along: the gateway refuses a server whose issuer's CRL it lacks.
        self.ca_cert_path.write_bytes(self.ca.bundle_pem(include_crl=True))
        bundle = b"".join(ca.bundle_pem(include_crl=True) for ca in self.client_cas)
        self.client_ca_path.write_bytes(bundle)

    def _start_relay(self) -> None:
        ports = self._require_ports()
        try:
            self._relay = RelaySink((self._host, ports.relay), self._on_relayed, self)
        except OSError as exc:
            raise DovecotError(f"cannot listen for relayed mail on {ports.relay}: {exc}") from exc

    def _on_relayed(self, message: RelayedMessage) -> None:
        with self._relayed_lock:
            self._relayed.append(message)
        for recipient in message.recipients:
            if recipient.lower() in self._users:
                self.deliver(recipient, message.data, sender=message.mail_from)

    def _config_values(self) -> dict[str, object]:
        ident = self._identity
        ports = self._require_ports()
        assert self._base_dir is not None
        mechanisms = ["plain", "login"]
        if self.client_cas:
            mechanisms.append("external")
        if self.oauth2_introspection_url:
            mechanisms += ["xoauth2", "oauthbearer"]
        protocols = ["imap", "lmtp"] + (["submission"] if self.submission_enabled else [])
        return {
            "instance_name": f"estafette-{ports.imaps}",
            "protocols": " ".join(protocols),
            "host": self._host,
            "base_dir": self._base_dir,
            "state_dir": self.root / "state",
            "log_path": self.log_path,
            "debug": "yes" if self.debug else "no",
            "internal_user": ident.internal_user,
            "internal_group": ident.internal_group,
            "login_user": ident.login_user,
            "server_cert": self.tls_dir / "server.pem",
            "server_key": self.tls_dir / "server.key",
            "auth_mechanisms": " ".join(mechanisms),
            "users_path": self.users_dir / "%Lu",
            "master_users_file": self.master_users_file,
            "default_uid": ident.mail_uid,
            "default_gid": ident.mail_gid,
            "mail_root": self.mail_root,
            "max_connections": self.max_connections,
            "max_connections_per_user": self.max_connections_per_user,
            "idle_check_interval": self.idle_check_interval,
            "client_limit": max(1000, 2 * self.max_connections + 100),
            "process_limit": self.max_connections + 50,
            "login_processes": max(1, min(4, os.cpu_count() or 1)),
            "login_chroot": "login" if ident.is_root else "",
            "anvil_chroot": "empty" if ident.is_root else "",
            "imap_port": ports.imap,
            "imaps_port": ports.imaps,
            "lmtp_port": ports.lmtp,
            "submission_port": ports.submission,
            "submissions_port": ports.submissions,
            "relay_host": self._host,
            "relay_port": ports.relay,
            "client_ca_file": self.client_ca_path,
            "cert_username_field": self.cert_username_field,
            "oauth2_conf_file": self.conf_dir / "oauth2.conf.ext",
            "introspection_url": self.oauth2_introspection_url or "",
            "username_attribute": self.oauth2_username_attribute,
            "lmtp_plugins": "sieve" if self.sieve_enabled else "",
            "mailbox_list_index": "yes" if self.notify else "no",
        }

    def _write_config(self) -> None:
        values = self._config_values()
        passdbs = []
        if self.client_cas:
            passdbs.append(_render("client-cert.conf.tmpl", **values))
        if self.oauth2_introspection_url:
            passdbs.append(_render("oauth2.conf.tmpl", **values))
            ext = _render("oauth2.conf.ext.tmpl", **values)
            (self.conf_dir / "oauth2.conf.ext").write_text(ext)
        sections = []
        if self.submission_enabled:
            sections.append(_render("submission.conf.tmpl", **values))
        config = _render(
            "dovecot.conf.tmpl",
            **values,
            optional_passdbs="\n".join(passdbs),
            optional_sections="\n".join(sections),
        )
        self.config_path.write_text(config)

    def _spawn(self) -> None:
        # Own session: stop() can then find and kill every Dovecot process.
        with self.stderr_path.open("ab") as stderr:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [str(self.binary), "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
                cwd=self.root,
            )

    def _wait_until_ready(self) -> None:
        """Poll the IMAPS port until the TLS greeting arrives, within start_timeout."""
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        last_error: Exception | None = None
        while (remaining := deadline - time.monotonic()) > 0:
            if self._proc.poll() is not None:
                raise DovecotError(
                    f"dovecot exited with status {self._proc.returncode} while starting\n"
                    + self.diagnostics()
                )
            try:
                self._read_imaps_greeting(timeout=min(2.0, remaining))
                return
            except (OSError, ssl.SSLError) as exc:
                last_error = exc
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=min(0.05, max(remaining, 0.001)))
        raise DovecotError(
            f"dovecot did not greet on imaps {self._host}:{self.imaps_port} within "
            f"{self.start_timeout:.0f}s (last error: {last_error})\n" + self.diagnostics()
        )

    def _read_imaps_greeting(self, timeout: float) -> None:
        context = self.client_ssl_context()
        with (
            socket.create_connection((self._host, self.imaps_port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=self._host) as tls,
        ):
            greeting = tls.recv(1024)
        if not greeting.startswith(b"* OK"):
            raise ConnectionError(f"unexpected greeting {greeting[:80]!r}")

    def diagnostics(self) -> str:
        """The last lines of Dovecot's stderr and log file, for error messages."""
        parts = []
        if err := _tail(self.stderr_path):
            parts.append(f"--- {self.stderr_path} ---\n{err}")
        if log := _tail(self.log_path):
            parts.append(f"--- {self.log_path} ---\n{log}")
        return "\n".join(parts) or "(Dovecot wrote nothing to stderr or its log)"

    # -- using the server --------------------------------------------------------

    def deliver(
        self,
        recipient: str,
        message: bytes | str | Message,
        sender: str = "sender@mssante.example",
    ) -> None:
        """Deliver one message to one mailbox over LMTP, as an MTA would.

        Raises DeliveryError when Dovecot refuses it (unknown user...).
        """
        data = _message_bytes(message)
        try:
            with smtplib.LMTP(self._host, self.lmtp_port, timeout=30) as lmtp:
                refused = lmtp.sendmail(sender, [recipient], data)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(
                f"LMTP refused {recipient}: {exc.recipients}\n{self.diagnostics()}"
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"LMTP delivery to {recipient} failed: {exc}\n{self.diagnostics()}"
            ) from exc
        if refused:
            raise DeliveryError(f"LMTP refused {recipient}: {refused}\n{self.diagnostics()}")

    def doveadm(self, *args: str) -> str:
        """Run doveadm against this instance (e.g. to change mail "from a desktop client")."""
        doveadm = self.binary.with_name("doveadm")
        if not doveadm.exists():
            doveadm = Path(shutil.which("doveadm") or "/usr/bin/doveadm")
        result = subprocess.run(  # noqa: S603 - fixed executable, args from the caller
            [str(doveadm), "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise DovecotError(f"doveadm {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)


def _terminate_process_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM every Dovecot process, then make sure none of them survives.

    Why the whole group: each child shuts down by itself at once, while the
    master alone would spend 1-6 s waiting on them. Once they have the signal
    the master only supervises, so it is killed if it dawdles. A child forked
    while the signal was being delivered misses it, hence the second round.
    """
    pgid = proc.pid
    if proc.poll() is None:
        _signal_group(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=MASTER_EXIT_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)
    _signal_group(pgid, signal.SIGTERM)
    started = time.monotonic()
    while members := _process_group_members(pgid):
        waited = time.monotonic() - started
        if waited > grace:
            raise DovecotError(f"Dovecot processes survived stop(): {members}")
        if waited > 1.0:
            _signal_group(pgid, signal.SIGKILL)
        time.sleep(0.02)  # polling /proc, bounded by the deadline above


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


@atexit.register
def _stop_forgotten_servers() -> None:  # pragma: no cover - runs at interpreter exit
    """Never leave a Dovecot behind when a test run is interrupted.

    Only the process that started a server stops it: forked children (gunicorn
    workers in `make run`) inherit this hook but do not own Dovecot.
    """
    for server in list(_running_servers):
        if server._owner_pid == os.getpid():
            with contextlib.suppress(Exception):
                server.stop()
