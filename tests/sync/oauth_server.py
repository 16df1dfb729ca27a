"""A local stand-in for Pro Santé Connect: a client-credentials token endpoint (RFC 6749
§4.4) and the RFC 7662 introspection endpoint Dovecot's oauth2 passdb asks about tokens."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote


class FakeOAuth:
    """Register clients with `add_client`; tokens it issues are active for that mailbox."""

    def __init__(self) -> None:
        self.clients: dict[str, tuple[str, str]] = {}  # client id -> (secret, username)
        self.issued: dict[str, str] = {}  # access token -> username
        self.token_requests: list[str] = []  # client ids, in order
        self.introspected: list[str] = []  # tokens Dovecot asked about
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if self.path == "/token":
                    status, answer = outer._token(self.headers.get("Authorization", ""), form)
                elif self.path == "/introspect":
                    status, answer = 200, outer._introspect(form.get("token", ""))
                else:
                    status, answer = 404, {"error": "not_found"}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.token_url = f"{base}/token"
        self.introspection_url = f"{base}/introspect"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def add_client(self, username: str) -> tuple[str, str]:
        """A confidential client whose tokens open `username`'s mailbox: (id, secret)."""
        client_id, secret = f"client-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
        with self._lock:
            self.clients[client_id] = (secret, username)
        return client_id, secret

    def _token(self, authorization: str, form: dict[str, str]) -> tuple[int, dict]:
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        scheme, _, encoded = authorization.partition(" ")
        try:
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return 401, {"error": "invalid_client"}
        client_id, secret = unquote(client_id), unquote(secret)
        with self._lock:
            self.token_requests.append(client_id)
            known = self.clients.get(client_id)
            if scheme.lower() != "basic" or known is None or known[0] != secret:
                return 401, {"error": "invalid_client"}
            token = secrets.token_urlsafe(24)
            self.issued[token] = known[1]
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 600}

    def _introspect(self, token: str) -> dict:
        with self._lock:
            self.introspected.append(token)
            user = self.issued.get(token)
        return {"active": True, "username": user} if user else {"active": False}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
