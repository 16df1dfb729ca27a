"""The layout is the architecture: who may import whom, checked on the source (issue 14).

`backend/mail` is the only code that speaks IMAP or SMTP; the api side reaches the sync
loop only through its entry point; and the data path flows one way (IMAP → sync → store
→ outbox → push; app → API → store/IMAP): sync never imports the api's reading code, and
reading and sending never import sync.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("backend", "mobile_api")
MAIL_LIBRARIES = ("imapclient", "imaplib", "smtplib")


def _modules() -> Iterator[tuple[str, Path]]:
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            yield ".".join(relative.parts), path


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module a file imports, at any depth (lazy imports in functions count)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:  # `from backend.sync import worker`
                yield node.lineno, f"{node.module}.{alias.name}"


def _is(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _violations(importer: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for module, path in _modules():
        if not _is(module, importer):
            continue
        for line, imported in _imports(path):
            if any(_is(imported, name) for name in forbidden):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    return sorted(set(found))


def test_only_backend_mail_imports_the_imap_and_smtp_libraries() -> None:
    found = []
    for module, path in _modules():
        if _is(module, "backend.mail"):
            continue
        for line, imported in _imports(path):
            if any(_is(imported, library) for library in MAIL_LIBRARIES):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert not found, "IMAP/SMTP outside backend/mail:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        ("backend.reading", ("backend.sync",)),
        ("backend.outgoing", ("backend.sync",)),
        ("backend.store", ("backend.sync", "backend.outgoing")),
        ("backend.mail", ("backend.sync", "backend.reading", "backend.outgoing")),
        ("backend.sync", ("backend.reading", "backend.outgoing", "mobile_api")),
        ("backend.push", ("backend.sync", "backend.reading", "backend.outgoing", "mobile_api")),
        ("mobile_api", ("backend.sync.worker", "backend.sync.catch_up")),
        ("backend", ("devtools", "tests", "bench")),  # the product ships without its tools
        ("mobile_api", ("devtools", "tests", "bench")),
    ],
)
def test_the_data_path_flows_one_way(importer: str, forbidden: tuple[str, ...]) -> None:
    found = _violations(importer, forbidden)
    assert not found, f"{importer} must not import {', '.join(forbidden)}:\n" + "\n".join(found)


def test_the_checker_sees_lazy_and_from_imports(tmp_path: Path) -> None:
    """The test above would pass vacuously if it missed these forms."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from backend.sync import worker\n"
        "def run():\n"
        "    import imapclient\n"
        "    from smtplib import SMTP\n"
    )
    imported = {name for _line, name in _imports(sample)}
    assert {"backend.sync.worker", "imapclient", "smtplib"} <= imported
