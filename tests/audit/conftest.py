"""The audit specifications sign in administrators the way the admin ones do."""

from tests.admin.conftest import admin, member  # noqa: F401  (fixtures)
