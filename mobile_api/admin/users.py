"""Admin: user accounts. A reset or a disable ends the user's sessions at once."""

from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from backend.accounts import users as accounts
from backend.admin import accounts as admin_accounts
from backend.admin.audited_changes import AdminChange, user_created, user_updated
from mobile_api.admin import commit_change, schemas
from mobile_api.auditing import audited
from mobile_api.auth.tokens import admin_required
from mobile_api.context import db
from mobile_api.pagination import PageArgsSchema, decode_cursor, encode_cursor

blp = Blueprint(
    "admin_users", __name__, url_prefix="/api/v1/admin/users", description="Admin: users"
)


@blp.get("")
@audited("admin.user_list", target_type="user")
@admin_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, schemas.UserPageSchema)
def list_users(args: dict) -> dict:
    """Every account, oldest first."""
    after = decode_cursor(args["cursor"], 1)
    rows, next_key = admin_accounts.list_users(
        db=db(), limit=args["limit"], after=int(after[0]) if after else None
    )
    return {"items": rows, "next": encode_cursor(next_key) if next_key else None}


@blp.post("")
@audited("admin.user_create", target_type="user")
@admin_required
@blp.arguments(schemas.UserCreateSchema)
@blp.response(201, schemas.UserSchema)
def create_user(body: dict) -> object:
    """Create an account; the user enrols their TOTP at first sign-in."""
    user = accounts.create_user(
        db=db(),
        username=body["username"],
        password=body["password"],
        is_admin=body["is_admin"],
        display_name=body["display_name"],
    )
    if body["cps_id"]:
        admin_accounts.assign_cps_id(db=db(), user=user, cps_id=body["cps_id"])
    commit_change(user_created(user))
    return user


@blp.get("/<user_id>")
@audited("admin.user_read", target_type="user", target="user_id")
@admin_required
@blp.response(200, schemas.UserSchema)
def get_user(user_id: str) -> object:
    """One account."""
    return accounts.get_user(db=db(), public_id=user_id)


@blp.patch("/<user_id>")
@audited("admin.user_update", target_type="user", target="user_id")
@admin_required
@blp.arguments(schemas.UserPatchSchema)
@blp.response(200, schemas.UserSchema)
def update_user(body: dict, user_id: str) -> object:
    """Disable, rename, grant or remove admin, reset the password or the TOTP."""
    user = accounts.get_user(db=db(), public_id=user_id)
    details = admin_accounts.update_user(db=db(), user=user, patch=body, acting=g.user)
    commit_change(user_updated(user, details))
    return user


@blp.delete("/<user_id>")
@audited("admin.user_delete", target_type="user", target="user_id")
@admin_required
@blp.response(204)
def delete_user(user_id: str) -> None:
    """Delete the account with its devices and memberships; the trail keeps its id."""
    user = accounts.get_user(db=db(), public_id=user_id)
    public_id = user.public_id
    admin_accounts.delete_user(db=db(), user=user, acting=g.user)
    commit_change(AdminChange("admin.user_delete", target_type="user", target=public_id))
