"""`GET /api/v1/directory`: recipient autocomplete over the national MSSanté directory."""

from __future__ import annotations

from flask import Response, g
from flask_smorest import Blueprint

from backend.directory import search as directory
from mobile_api.auditing import audited, note
from mobile_api.auth.tokens import session_required
from mobile_api.compiled_dump import compile_dump, json_response
from mobile_api.context import db
from mobile_api.directory import schemas

blp = Blueprint("directory", __name__, url_prefix="/api/v1", description="Directory")
# Called on every keystroke: dumped by a function compiled from the schema.
_dump_result = compile_dump(schemas.DirectoryResultSchema())


@blp.get("/directory")
@audited("directory.search")
@blp.arguments(schemas.DirectoryQuerySchema, location="query")
@blp.response(200, schemas.DirectoryResultSchema)
@session_required
def search_directory(args: dict) -> Response:
    """Find MSSanté recipients as the user types: your correspondents and establishment first.

    The audit record counts the hits; the query itself is never recorded (a name typed
    here may be a patient's)."""
    hits = directory.search(db=db(), user=g.user, query=args["q"], limit=args["limit"])
    note(hits=len(hits))
    return json_response(_dump_result({"items": [vars(hit) for hit in hits]}))
