"""A stand-in for an establishment's directory, speaking SCIM 2.0 (RFC 7643/7644).

Keycloak (with a SCIM extension), Entra ID and LemonLDAP::NG expose their users and
groups this way. Tests and the demo hold the directory here: `users` and `groups` as SCIM
resources, served paged (`startIndex`, `count`) as `ListResponse`s behind a bearer token,
and `fail_next` makes the next call answer an error, as a directory being upgraded does.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
SCIM_JSON = "application/scim+json"


class ScimDirectory:
    """The directory on a free loopback port; `url` is its SCIM base (…/scim/v2)."""

    def __init__(self, token: str, *, page_size: int = 2) -> None:
        self.token = token
        self.page_size = page_size  # small, so that a sync must follow the pages
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.failures: list[int] = []
        self._lock = threading.Lock()
        directory = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                directory._answer(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/scim/v2"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the directory's content ----------------------------------------------------------

    def add_user(
        self, user_name: str, *, given: str = "", family: str = "", active: bool = True
    ) -> str:
        with self._lock:
            user_id = str(uuid.uuid4())
            self.users[user_id] = {
                "schemas": [USER_SCHEMA],
                "id": user_id,
                "userName": user_name,
                "active": active,
                "name": {"givenName": given, "familyName": family},
                "displayName": f"{given} {family}".strip() or user_name,
                "meta": {"resourceType": "User"},
            }
            return user_id

    def set_active(self, user_name: str, active: bool) -> None:
        with self._lock:
            for user in self.users.values():
                if user["userName"] == user_name:
                    user["active"] = active

    def remove_user(self, user_name: str) -> None:
        with self._lock:
            gone = [i for i, u in self.users.items() if u["userName"] == user_name]
            for user_id in gone:
                del self.users[user_id]
                for group in self.groups.values():
                    group["members"] = [m for m in group["members"] if m["value"] != user_id]

    def set_group(self, name: str, user_names: list[str]) -> None:
        with self._lock:
            ids = {u["userName"]: i for i, u in self.users.items()}
            group = next((g for g in self.groups.values() if g["displayName"] == name), None)
            if group is None:
                group_id = str(uuid.uuid4())
                group = {"schemas": [GROUP_SCHEMA], "id": group_id, "displayName": name}
                self.groups[group_id] = group
            group["members"] = [{"value": ids[n], "display": n, "type": "User"} for n in user_names]

    def fail_next(self, status: int = 503) -> None:
        self.failures.append(status)

    # -- the wire -------------------------------------------------------------------------

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(request, 401, _error(401, "invalid bearer token"))
        with self._lock:
            if self.failures:
                status = self.failures.pop(0)
                return self._send(request, status, _error(status, "directory unavailable"))
            url = urlsplit(request.path)
            query = parse_qs(url.query)
            kind = url.path.removeprefix("/scim/v2/")
            if kind not in ("Users", "Groups"):
                return self._send(request, 404, _error(404, "no such resource type"))
            resources = list((self.users if kind == "Users" else self.groups).values())
        start = max(int(query.get("startIndex", ["1"])[0]), 1)
        count = min(int(query.get("count", [str(self.page_size)])[0]), self.page_size)
        page = resources[start - 1 : start - 1 + count]
        self._send(
            request,
            200,
            {
                "schemas": [LIST_RESPONSE],
                "totalResults": len(resources),
                "startIndex": start,
                "itemsPerPage": len(page),
                "Resources": page,
            },
        )

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, document: dict) -> None:
        data = json.dumps(document).encode()
        request.send_response(status)
        request.send_header("Content-Type", SCIM_JSON)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


def _error(status: int, detail: str) -> dict:
    return {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail}
