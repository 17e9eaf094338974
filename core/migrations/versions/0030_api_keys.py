"""api keys: scoped keys that integrators authenticate with

Revision ID: 0030
Revises: 0002
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0030"
down_revision = "0002"  # users
branch_labels = None
depends_on = None

UUID = postgresql.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", UUID, nullable=False),
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(8), nullable=False),
        sa.Column("environment", sa.String(4), nullable=False),
        sa.Column("secret_digest", sa.String(64), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(40)), nullable=False),
        sa.Column("allowed_ips", postgresql.ARRAY(sa.String(50)), nullable=True),
        sa.Column("stepped_up", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("last_used_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_api_keys_user_id_users"),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
    )
    op.create_index("ix_api_keys_user_created", "api_keys", ["user_id", "created_at"])


def downgrade() -> None:
    op.drop_table("api_keys")
