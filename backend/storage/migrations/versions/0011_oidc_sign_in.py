"""oidc_identities, oidc_logins: sign-in with Pro Santé Connect and the establishment's IdP

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 05:30:00

An identity links a user to their account at a provider (and keeps its tokens, sealed,
for `oauth_user` mailboxes); a login is one sign-in under way, kept until its one-time
code is redeemed or expires.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "oidc_identities",
        sa.Column("id", BigId, nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("provider_sub", sa.String(length=255), nullable=True),
        sa.Column("session_id", sa.String(length=255), nullable=True),
        sa.Column("access_token", sa.LargeBinary(), nullable=True),
        sa.Column("refresh_token", sa.LargeBinary(), nullable=True),
        sa.Column("access_expires_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_sign_in_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_oidc_identities_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_identities")),
        sa.UniqueConstraint("provider", "subject", name=op.f("uq_oidc_identities_provider")),
        sa.UniqueConstraint("public_id", name=op.f("uq_oidc_identities_public_id")),
    )
    op.create_index(
        op.f("ix_oidc_identities_user_id"), "oidc_identities", ["user_id"], unique=False
    )
    op.create_index(
        op.f("ix_oidc_identities_provider_sub"), "oidc_identities", ["provider_sub"], unique=False
    )
    op.create_table(
        "oidc_logins",
        sa.Column("id", BigId, nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("state_digest", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=True),
        sa.Column("provider_verifier", sa.LargeBinary(), nullable=True),
        sa.Column("app_challenge", sa.String(length=128), nullable=False),
        sa.Column("app_redirect_uri", sa.String(length=512), nullable=False),
        sa.Column("app_state", sa.String(length=128), nullable=True),
        sa.Column("code_digest", sa.String(length=64), nullable=True),
        sa.Column("identity", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("redeemed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_logins")),
        sa.UniqueConstraint("code_digest", name=op.f("uq_oidc_logins_code_digest")),
        sa.UniqueConstraint("public_id", name=op.f("uq_oidc_logins_public_id")),
        sa.UniqueConstraint("state_digest", name=op.f("uq_oidc_logins_state_digest")),
    )
    op.create_index(op.f("ix_oidc_logins_expires_at"), "oidc_logins", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_oidc_logins_expires_at"), table_name="oidc_logins")
    op.drop_table("oidc_logins")
    op.drop_index(op.f("ix_oidc_identities_provider_sub"), table_name="oidc_identities")
    op.drop_index(op.f("ix_oidc_identities_user_id"), table_name="oidc_identities")
    op.drop_table("oidc_identities")
