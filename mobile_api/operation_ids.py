"""An operationId for every operation of the OpenAPI document, from the view that serves it.

Client generators name their methods after it, and a contract test can point at one call.
The view's endpoint (`blueprint.function`) is unique in the app, so the id is too; written
once here (an apispec plugin) rather than by hand on each route.
"""

from __future__ import annotations

from typing import Any

from apispec import BasePlugin


class OperationIds(BasePlugin):
    def operation_helper(
        self, path: str | None = None, operations: dict | None = None, **kwargs: Any
    ) -> None:
        rule = kwargs.get("rule")
        if rule is None or not operations:
            return
        name = rule.endpoint.replace(".", "_")
        for method, operation in operations.items():
            operation.setdefault(
                "operationId", name if len(operations) == 1 else f"{name}_{method}"
            )
