"""`one_of`: a batch of ids in one parameter on PostgreSQL, the same rows as IN anywhere."""

from __future__ import annotations

from sqlalchemy import select

from backend.storage.database import one_of, session_scope
from backend.storage.models import User
from tests.factories import create_user


def test_one_of_selects_exactly_the_rows_an_in_list_does(services) -> None:
    for name in ("ana", "ben", "cyd", "dan"):
        create_user(services, name)
    with session_scope(services.sessions) as db:
        ids = dict(db.execute(select(User.username, User.id)).all())
        wanted = [ids["ben"], ids["dan"], 10**9]  # one id that matches nothing

        def names(condition) -> list[str]:
            return sorted(db.scalars(select(User.username).where(condition)))

        assert names(one_of(db, User.id, wanted)) == names(User.id.in_(wanted)) == ["ben", "dan"]
        assert names(one_of(db, User.id, set(wanted))) == ["ben", "dan"]
        assert names(one_of(db, User.id, [])) == []


def test_one_of_is_one_array_parameter_on_postgresql_and_an_in_list_elsewhere(services) -> None:
    with session_scope(services.sessions) as db:
        statement = str(select(User.id).where(one_of(db, User.id, range(500))).compile(db.bind))
    if services.engine.dialect.name == "postgresql":
        assert "= ANY (" in statement and " IN " not in statement
    else:
        assert " IN " in statement
