"""A refresh never shows searches an empty or half-loaded directory."""

from __future__ import annotations

import threading
from pathlib import Path

from backend.directory import extraction, loading
from backend.directory import search as directory
from backend.storage.models import User
from tests.directory.support import extraction as generated
from tests.directory.support import import_file
from tests.support import wait_until


def test_searches_during_an_import_always_see_a_whole_directory(
    app, services, user, tmp_path: Path
) -> None:
    assert import_file(app, generated(tmp_path, 3000, name="old.txt")).exit_code == 0
    new = generated(tmp_path, 3000, seed=99, name="new.txt")
    stop = threading.Event()
    answers: list[int] = []
    failures: list[BaseException] = []

    def keep_searching() -> None:
        while not stop.is_set():
            try:
                with services.sessions() as db:
                    owner = db.query(User).filter_by(public_id=user.user_id).one()
                    hits = directory.search(db=db, user=owner, query="hel lef", limit=5)
                    hits += directory.search(db=db, user=owner, query="martin", limit=5)
                answers.append(len(hits))
            except BaseException as exc:  # reported below, with the rest
                failures.append(exc)

    searchers = [threading.Thread(target=keep_searching) for _ in range(3)]
    for thread in searchers:
        thread.start()
    try:
        wait_until(lambda: len(answers) >= 3, timeout=30, what="searches before the import")
        before = len(answers)
        tally = extraction.Tally()
        with new.open(encoding="utf-8") as lines:
            loading.replace_directory(services.engine, extraction.read_entries(lines, tally), tally)
        wait_until(lambda: len(answers) >= before + 3, timeout=30, what="searches after it")
    finally:
        stop.set()
        for thread in searchers:
            thread.join(timeout=30)

    assert failures == []
    # Each round finds Hélène Lefèvre (1) and five Martins (5), before, during and after.
    assert set(answers) == {6}
