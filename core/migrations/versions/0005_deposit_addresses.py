"""deposit addresses: the per-chain pool derived from xpubs, one address per (user, chain)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deposit_addresses",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("derivation_index", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_deposit_addresses"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_deposit_addresses_user_id_users"),
        sa.UniqueConstraint("chain", "derivation_index", name="uq_deposit_addresses_chain_index"),
        sa.UniqueConstraint("chain", "address", name="uq_deposit_addresses_chain_address"),
        sa.CheckConstraint("derivation_index BETWEEN 0 AND 2147483647", name="ck_deposit_addresses_index_not_hardened"),
        sa.CheckConstraint("(user_id IS NULL) = (assigned_at IS NULL)", name="ck_deposit_addresses_assigned_consistent"),
    )
    op.create_index("uq_deposit_addresses_user_chain", "deposit_addresses", ["user_id", "chain"], unique=True,
                    postgresql_where=sa.text("user_id IS NOT NULL"))
    op.create_index("ix_deposit_addresses_pool", "deposit_addresses", ["chain", "derivation_index"],
                    postgresql_where=sa.text("user_id IS NULL"))


def downgrade() -> None:
    op.drop_table("deposit_addresses")
