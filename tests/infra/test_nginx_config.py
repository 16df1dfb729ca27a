"""The production nginx site loads in a real nginx, and no client can forge a CPS certificate.

`nginx -t` runs against a copy of infra/nginx/estafette.conf in a throwaway prefix, with
its certificate, CA and log paths pointed at files made here and its listen addresses moved
to free loopback ports (nginx -t binds them), so the check writes nothing outside the
temporary directory, needs no root and cannot collide with a running web server.
"""

from __future__ import annotations

import datetime
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import free_port

SITE = Path(__file__).resolve().parents[2] / "infra" / "nginx" / "estafette.conf"
CPS_LOCATION = ("=", "/api/v1/auth/cps")
CPS_HEADERS = {
    "x-client-cert": "$ssl_client_escaped_cert",
    "x-client-verify": "$ssl_client_verify",
}

# Production paths in the site config -> file names in the temporary prefix.
PLACEHOLDERS = {
    "/etc/estafette/tls/server.crt": "tls/server.crt",
    "/etc/estafette/tls/server.key": "tls/server.key",
    "/etc/estafette/cps-cards-ca.pem": "tls/cps-cards-ca.pem",
    "/var/lib/estafette/crl/all-crls.pem": "tls/all-crls.pem",
    "/var/log/nginx/estafette.access.log": "logs/access.log",
    "/var/log/nginx/estafette.error.log": "logs/error.log",
}

pytestmark = pytest.mark.unit


# ---- a small parser for nginx's configuration syntax ----------------------------------


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None
    parents: list[Directive] = field(default_factory=list, repr=False)


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs: kind is "word" (quoted or not; quotes removed) or the
    punctuation itself, one of `{`, `}`, `;`."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":  # a comment, only where a token would start
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            out.append((c, c))
            i += 1
        elif c in "'\"":
            j, buf = i + 1, []
            while text[j] != c:
                if text[j] == "\\":
                    j += 1
                buf.append(text[j])
                j += 1
            out.append(("word", "".join(buf)))
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in "{};":
                j += 1
            out.append(("word", text[i:j]))
            i = j
    return out


def parse(text: str) -> list[Directive]:
    """Directive tree of an nginx config: enough to reason about blocks and inheritance."""
    root: list[Directive] = []
    stack: list[tuple[list[Directive], list[Directive]]] = [(root, [])]
    words: list[str] = []
    for kind, value in _tokens(text):
        body, parents = stack[-1]
        if kind == "word":
            words.append(value)
        elif kind == ";":
            body.append(Directive(words[0], words[1:], None, parents))
            words = []
        elif kind == "{":
            block: list[Directive] = []
            directive = Directive(words[0], words[1:], block, parents)
            body.append(directive)
            stack.append((block, [*parents, directive]))
            words = []
        else:
            stack.pop()
    assert len(stack) == 1 and not words, "unbalanced braces in the config"
    return root


def walk(body: list[Directive]) -> Iterator[Directive]:
    for d in body:
        yield d
        if d.block is not None:
            yield from walk(d.block)


def _site() -> list[Directive]:
    return parse(SITE.read_text(encoding="utf-8"))


def _tls_server(tree: list[Directive]) -> Directive:
    servers = [
        d
        for d in tree
        if d.name == "server" and any(x.name == "listen" and "ssl" in x.args for x in d.block)
    ]
    assert len(servers) == 1, "expected exactly one TLS server block"
    return servers[0]


# ---- nginx -t ------------------------------------------------------------------------


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, *, ca: bool, dns: str | None = None
) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _crl(issuer: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A real CRL: nginx -t parses the ssl_crl file and rejects anything else."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .last_update(now - datetime.timedelta(minutes=5))
        .next_update(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


def _write_pems(prefix: Path) -> None:
    (prefix / "tls").mkdir()
    server_key = ec.generate_private_key(ec.SECP256R1())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    (prefix / "tls/server.key").write_bytes(_key_pem(server_key))
    (prefix / "tls/server.crt").write_bytes(
        _certificate("estafette.test", server_key, ca=False, dns="estafette.test")
    )
    (prefix / "tls/cps-cards-ca.pem").write_bytes(
        _certificate("AC TEST IGC-SANTE (throwaway)", ca_key, ca=True)
    )
    (prefix / "tls/all-crls.pem").write_bytes(_crl("AC TEST IGC-SANTE (throwaway)", ca_key))


def _nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        pytest.fail("nginx is not installed (Debian: apt-get install nginx-light); it is required")
    return found


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def _listen_on_loopback(site: str) -> str:
    """Move every `listen` to a free loopback port: nginx -t really binds them."""
    ports: dict[str, int] = {}
    ipv6 = _has_ipv6()

    def local(match: re.Match[str]) -> str:
        indent, address, rest = match.groups()
        v6 = address.startswith("[")
        port = address.rsplit(":", 1)[-1] if (v6 or ":" in address) else address
        new = ports.setdefault(port, free_port())
        if v6:
            return f"{indent}listen [::1]:{new}{rest};" if ipv6 else ""
        return f"{indent}listen 127.0.0.1:{new}{rest};"

    site, count = re.subn(r"(?m)^(\s*)listen\s+(\S+?)((?:\s[^;]*)?);", local, site)
    assert count, "no listen directive found in the site config"
    return site


def _prepare_prefix(prefix: Path) -> Path:
    """Lay out a throwaway nginx prefix around a copy of the site config; returns nginx.conf."""
    site = SITE.read_text(encoding="utf-8")
    for production, local in PLACEHOLDERS.items():
        assert production in site, f"{production} no longer in the site config; update the test"
        site = site.replace(production, str(prefix / local))
    site = _listen_on_loopback(site)
    live = "\n".join(line.split("#", 1)[0] for line in site.splitlines())
    stray = re.findall(r"(?<![\w$])/(?:etc|var|run|usr|srv|opt)/\S*", live)
    assert not stray, f"paths outside the test prefix would be touched: {stray}"

    (prefix / "logs").mkdir()
    (prefix / "temp").mkdir()
    _write_pems(prefix)
    (prefix / "estafette.conf").write_text(site, encoding="utf-8")
    mime = Path("/etc/nginx/mime.types")
    if mime.is_file():
        shutil.copy(mime, prefix / "mime.types")
    else:
        (prefix / "mime.types").write_text("types { application/json json; }\n")

    temp = prefix / "temp"
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
lock_file {prefix}/nginx.lock;
events {{ worker_connections 64; }}
http {{
    include {prefix}/mime.types;
    default_type application/octet-stream;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {prefix}/estafette.conf;
}}
""",
        encoding="utf-8",
    )
    return conf


def test_site_config_passes_nginx_t(tmp_path: Path) -> None:
    nginx = _nginx_binary()
    conf = _prepare_prefix(tmp_path)
    result = subprocess.run(
        [
            nginx,
            "-t",
            "-p",
            f"{tmp_path}/",
            "-c",
            str(conf),
            "-e",
            str(tmp_path / "error.log"),
            "-g",
            f"pid {tmp_path}/nginx.pid;",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"nginx -t rejected the site config:\n{result.stderr}{result.stdout}")


# ---- what the config must say -------------------------------------------------------


def _proxy_headers(location: Directive) -> dict[str, str]:
    return {
        d.args[0].lower(): d.args[1]
        for d in location.block or []
        if d.name == "proxy_set_header" and len(d.args) == 2
    }


def _proxying_locations(server: Directive) -> list[Directive]:
    return [
        d
        for d in walk(server.block)
        if d.name == "location" and any(x.name == "proxy_pass" for x in walk(d.block))
    ]


def test_client_certificate_reaches_the_app_only_on_the_cps_location() -> None:
    tree = _site()
    server = _tls_server(tree)
    locations = _proxying_locations(server)
    assert CPS_LOCATION in [tuple(loc.args) for loc in locations]
    assert len(locations) > 1

    for loc in locations:
        headers = _proxy_headers(loc)
        where = f"location {' '.join(loc.args)}"
        if tuple(loc.args) == CPS_LOCATION:
            for name, value in CPS_HEADERS.items():
                assert headers.get(name) == value, f"{where} must pass {name}: {value}"
        else:
            for name in CPS_HEADERS:
                assert headers.get(name) == "", f'{where} must clear {name} (set it to "")'

    # Nowhere else may a client-certificate variable travel to the upstream.
    for d in walk(tree):
        if d.name == "proxy_set_header" and any("$ssl_client" in a for a in d.args):
            assert d.parents and tuple(d.parents[-1].args) == CPS_LOCATION, d


def test_every_proxied_request_carries_forwarding_headers() -> None:
    for loc in _proxying_locations(_tls_server(_site())):
        headers = _proxy_headers(loc)
        where = f"location {' '.join(loc.args)}"
        for name in ("x-forwarded-for", "x-forwarded-proto", "x-request-id"):
            assert headers.get(name), f"{where} must set {name}"
        assert headers["x-request-id"] == "$request_id"
        assert any(x.name == "proxy_pass" and x.args == ["http://estafette_api"] for x in loc.block)


def test_access_logs_never_record_query_strings() -> None:
    tree = _site()
    formats = {d.args[0]: "".join(d.args[1:]) for d in walk(tree) if d.name == "log_format"}
    assert formats, "the site must define its own log_format"
    leaky = re.compile(r"\$(?:request(?![_a-z])|request_uri|args|query_string|is_args|arg_\w+)")
    for name, fmt in formats.items():
        assert not leaky.search(fmt), f"log_format {name} logs the query string"
        assert "$uri" in fmt

    access_logs = [d for d in walk(tree) if d.name == "access_log" and d.args != ["off"]]
    assert access_logs
    for d in access_logs:
        # Without an explicit format nginx uses "combined", which logs $request.
        assert len(d.args) >= 2 and d.args[1] in formats, f"access_log {d.args} format"


def test_tls_and_plain_http_policy() -> None:
    tree = _site()
    server = _tls_server(tree)
    settings = {d.name: d.args for d in server.block if d.block is None}
    assert settings["ssl_protocols"] == ["TLSv1.2", "TLSv1.3"]
    assert settings["ssl_verify_client"] == ["optional"]
    # Cards have their own CAs, and their revocation is checked (security audit, issue 13).
    assert settings["ssl_client_certificate"] == ["/etc/estafette/cps-cards-ca.pem"]
    assert settings["ssl_crl"] == ["/var/lib/estafette/crl/all-crls.pem"]
    assert settings["client_max_body_size"] == ["26m"]
    assert settings["gzip"] == ["off"]
    assert any(
        d.name == "add_header" and d.args[0] == "Strict-Transport-Security" for d in server.block
    )
    # TLS 1.2 suites: forward secrecy (ECDHE) and AEAD (GCM, ChaCha20-Poly1305) only.
    for suite in settings["ssl_ciphers"][0].split(":"):
        assert suite.startswith("ECDHE-"), suite
        assert "-GCM-" in suite or suite.endswith("-CHACHA20-POLY1305"), suite

    plain = [d for d in tree if d.name == "server" and d is not server]
    assert plain
    for srv in plain:
        assert all("ssl" not in d.args for d in srv.block if d.name == "listen")
        actions = [d for d in walk(srv.block) if d.name in ("proxy_pass", "return", "root")]
        assert actions and all(d.name == "return" and d.args[0] == "301" for d in actions)
