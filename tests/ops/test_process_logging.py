"""Logging is configured once, in every process: the api under gunicorn included (issue 14.4).

Under gunicorn nobody configured the root logger: INFO lines were dropped and errors came
out bare, with no time, level or logger. And health data never reaches a log line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backend.logs import configure_logging
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
CANARY = "CANARY-Dupont-Jeanne-1957"
RECORD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+ "
)


@pytest.fixture(params=["text", "json"])
def log_format(request) -> str:
    return request.param


@pytest.fixture
def gunicorn_log(base_env: dict[str, str], tmp_path: Path, log_format: str):
    """The api as deployed (infra/gunicorn.conf.py), its stderr in a file."""
    port = free_port()
    env = {
        **os.environ,
        **base_env,
        "ESTAFETTE_BIND": f"127.0.0.1:{port}",
        "ESTAFETTE_WORKERS": "1",
        "ESTAFETTE_LOG_FORMAT": log_format,
    }
    env.pop("ESTAFETTE_NIL")  # its absence is logged at start: a line of the app's own
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "infra/gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "gunicorn did not answer /readyz in 60 s"
            time.sleep(0.1)
        yield base, log_path
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_api_under_gunicorn_logs_full_records_and_no_health_data(
    gunicorn_log, log_format: str
) -> None:
    base, log_path = gunicorn_log
    httpx.post(
        f"{base}/api/v1/auth/login",
        json={"username": CANARY, "password": CANARY},
    )
    httpx.get(f"{base}/api/v1/mailboxes?q={CANARY}", headers={"Authorization": f"Bearer {CANARY}"})

    text = log_path.read_text()
    app_lines = [line for line in text.splitlines() if "ESTAFETTE_NIL is not set" in line]
    assert app_lines, text  # the app's own records are not dropped
    for line in app_lines:
        if log_format == "json":  # one object a line, what a SIEM indexes
            record = json.loads(line)
            assert {"timestamp", "level", "logger", "pid", "message"} <= set(record), line
            assert record["service"] == "api" and record["level"] == "WARNING"
        else:
            assert RECORD.match(line), line  # time, level and logger on every one
    assert CANARY not in text


def test_configuring_twice_adds_no_second_handler_and_keeps_the_imap_guard() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    configure_logging()
    configure_logging()
    assert len(root.handlers) <= max(len(before), 1)
    assert logging.getLogger("imapclient.imaplib").getEffectiveLevel() >= logging.INFO


def test_a_json_record_keeps_a_forged_line_break_inside_its_string(capsys) -> None:
    from backend.logs import _Context, _formatter, protect_log_lines

    protect_log_lines()
    logger = logging.getLogger("estafette.test.json")
    handler = logging.StreamHandler()
    handler.setFormatter(_formatter("json"))
    handler.addFilter(_Context())
    logger.addHandler(handler)
    try:
        logger.warning("user %s refused", "x\n2026-01-01 00:00:00,000 INFO forged")
    finally:
        logger.removeHandler(handler)
    [line] = capsys.readouterr().err.splitlines()
    assert json.loads(line)["message"].startswith("user x\\n2026")
