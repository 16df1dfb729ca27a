"""Node ids that pytest-xdist can schedule by: one per test, and the drills in one group.

xdist's controller keeps each test by its node id. On pytest 9.2 two things break that:
schemathesis 4.32 gives every fuzzed operation its function's id (the controller kept one
and dropped the rest), and xdist 3.8 writes its `@group` suffix to `item._nodeid`, which
pytest 9.2 no longer reads (`xdist_group` marks did nothing). Both ids are set here, and
checked, so a later pytest that changes this again fails the collection instead of
silently running fewer tests.
"""

from __future__ import annotations

import pytest

DRILL_GROUP = "drills"


def _set_node_id(item: pytest.Item, nodeid: str) -> None:
    item._id = type(item.id).parse(nodeid)
    if item.nodeid != nodeid:
        raise pytest.UsageError(f"could not give {item.name!r} the node id {nodeid!r}")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drills run real processes and count what they do against deadlines: under xdist
    they share one group, so two drills never compete for the cores with each other."""
    grouping = bool(getattr(config.option, "loadgroup", False))
    for item in items:
        module_path, _sep, _name = item.nodeid.rpartition("::")
        if not item.nodeid.endswith(item.name):  # schemathesis: "test[GET /x]" under "test"
            _set_node_id(item, f"{module_path}::{item.name}")
        if item.get_closest_marker("drill"):
            item.add_marker(pytest.mark.xdist_group(DRILL_GROUP))
        group = item.get_closest_marker("xdist_group")
        if group is not None and grouping:
            name = group.args[0] if group.args else group.kwargs.get("name", "default")
            _set_node_id(item, f"{item.nodeid}@{name}")
