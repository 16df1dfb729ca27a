"""Old and new builds side by side on one database, as during a rolling upgrade.

The new build is this source tree copied, plus one migration. When that migration is
declared expand-only, the old build's api keeps serving through and after the new
build's `db upgrade` (its /readyz says `expand_ahead`), both builds serve the same signed
in device, and after a rollback (the new api stopped) the old one carries on; the old
build's own `db upgrade` at start leaves the newer schema alone. When it is a contract
step, the old build stops being ready and its commands refuse to run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import select

from backend.storage.database import alembic_config
from backend.storage.models import User
from devtools.drills.push_harness import scratch_database
from devtools.drills.world import World
from tests.factories import create_user
from tests.support import Authenticator, bearer, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
NEW_REVISION = "9001"
MIGRATION = '''"""the new build's step: a nullable column its code will use

Revision ID: {revision}
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch_op:
        batch_op.add_column(sa.Column("nickname", sa.String(length=60), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_column("nickname")
'''


def new_build(at: Path, *, expand_only: bool) -> Path:
    """This tree plus one migration on top of its head, declared expand-only or not."""
    for package in ("backend", "mobile_api", "infra"):
        shutil.copytree(ROOT / package, at / package, ignore=shutil.ignore_patterns("__pycache__"))
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    versions = at / "backend" / "storage" / "migrations" / "versions"
    (versions / f"{NEW_REVISION}_device_nickname.py").write_text(
        MIGRATION.format(revision=NEW_REVISION, down=head)
    )
    if expand_only:
        database = at / "backend" / "storage" / "database.py"
        source = database.read_text()
        declared = re.sub(
            r"EXPAND_ONLY_REVISIONS: frozenset\[str\] = frozenset\(\{",
            f'EXPAND_ONLY_REVISIONS: frozenset[str] = frozenset({{"{NEW_REVISION}", ',
            source,
        )
        assert declared != source, "the expand-only declaration moved"
        database.write_text(declared)
    return at


class Build:
    """One build's processes, run from its own source tree."""

    def __init__(self, name: str, tree: Path, env: dict[str, str], logs: Path) -> None:
        self.name, self.tree, self.logs = name, tree, logs
        self.env = {**os.environ, **env}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.servers: list[subprocess.Popen] = []

    def flask(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "mobile_api", *args],
            cwd=self.tree,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def api(self) -> httpx.Client:
        port = free_port()
        log = self.logs / f"{self.name}-api.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "infra/gunicorn.conf.py"],
                cwd=self.tree,
                env={**self.env, "ESTAFETTE_BIND": f"127.0.0.1:{port}", "ESTAFETTE_WORKERS": "1"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.servers.append(server)
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

        def up() -> bool:
            assert server.poll() is None, log.read_text()
            try:
                return http.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, timeout=60, what=f"the {self.name} build's api")
        return http

    def stop(self) -> None:
        for server in self.servers:
            server.terminate()
            server.wait(timeout=30)
        self.servers.clear()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of the test's own on either engine: the new build's migration changes
    the schema, which the suite's shared PostgreSQL database must never keep."""
    if request.param == "sqlite":
        path = tmp_path / "estafette.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    with scratch_database("estafette_builds") as url:
        yield url


@pytest.fixture
def builds(base_env, tmp_path: Path) -> Iterator[Callable[[bool], tuple[Build, Build]]]:
    made: list[Build] = []

    def make(expand_only: bool) -> tuple[Build, Build]:
        new_tree = new_build(tmp_path / "new", expand_only=expand_only)
        made.append(Build("old", ROOT, base_env, tmp_path))
        made.append(Build("new", new_tree, base_env, tmp_path))
        return made[0], made[1]

    yield make
    for build in made:
        build.stop()


@pytest.fixture
def signed_in_mail(make_app) -> tuple[str, str, str]:
    """A user with one cached message: (username, mailbox public id, subject)."""
    services = make_app().extensions["estafette"]
    username = create_user(services)
    with services.sessions() as db:
        user_id = db.scalar(select(User.id).where(User.username == username))
    world = World(services)
    mailbox_id, public_id = world.mailbox(user_id)
    subject = f"Compte rendu {uuid.uuid4().hex[:6]}"
    world.new_mail(mailbox_id, subject=subject)
    return username, public_id, subject


def _subjects(http: httpx.Client, token: str, mailbox: str) -> list[str]:
    answer = http.get(f"/api/v1/mailboxes/{mailbox}/messages", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    return [item["subject"] for item in answer.json()["items"]]


def test_an_expand_step_keeps_the_old_build_serving_beside_the_new_and_after_rollback(
    builds, signed_in_mail
) -> None:
    username, mailbox, subject = signed_in_mail
    old, new = builds(expand_only=True)
    old_api = old.api()
    device = {"name": "Pixel de garde", "platform": "android", "push_token": "tok-rolling"}
    token = Authenticator().sign_in(old_api, username, device=device)["access_token"]
    code_head = old_api.get("/readyz").json()["code_schema"]

    upgraded = new.flask("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    new_api = new.api()

    old_ready, new_ready = old_api.get("/readyz"), new_api.get("/readyz")
    assert old_ready.status_code == new_ready.status_code == 200
    assert old_ready.json()["schema_state"] == "expand_ahead"
    assert old_ready.json()["code_schema"] == code_head
    assert new_ready.json()["schema_state"] == "current"
    assert old_ready.json()["schema"] == new_ready.json()["code_schema"] == NEW_REVISION
    assert _subjects(old_api, token, mailbox) == _subjects(new_api, token, mailbox) == [subject]

    # Rollback: the new build stops; an old host (re)starts with its usual `db upgrade`.
    new.stop()
    restarted = old.flask("db", "upgrade")
    assert restarted.returncode == 0, restarted.stderr
    created = old.flask("users", "create", "rolled-back", "--password-stdin", stdin="x" * 16 + "\n")
    assert created.returncode == 0, created.stderr
    assert old_api.get("/readyz").json()["schema"] == NEW_REVISION
    assert _subjects(old_api, token, mailbox) == [subject]


def test_a_contract_step_stops_the_old_build(builds, signed_in_mail) -> None:
    old, new = builds(expand_only=False)
    old_api = old.api()
    assert old_api.get("/readyz").status_code == 200

    upgraded = new.flask("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr

    not_ready = old_api.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["code"] == "not_ready"
    refused = old.flask("users", "create", "too-old", "--password-stdin", stdin="x" * 16 + "\n")
    assert refused.returncode != 0
    assert "does not know" in refused.stderr
    assert new.api().get("/readyz").json()["schema_state"] == "current"
