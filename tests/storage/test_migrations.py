"""The migrations build exactly the schema the models describe, on both engines."""

from __future__ import annotations

from alembic import command

from backend.storage.database import alembic_config, require_current_schema


def test_migrations_match_the_models(services, database_url) -> None:
    # Raises if autogenerate would find any difference between models and migrations.
    command.check(alembic_config(services.engine.url.render_as_string(hide_password=False)))


def test_a_migrated_database_is_current(services) -> None:
    require_current_schema(services.engine)
