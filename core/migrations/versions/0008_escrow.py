"""escrow contracts and dispute evidence

Revision ID: 0008
Revises: 0003
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0003"  # the ledger: contracts hold money
branch_labels = None
depends_on = None

MONEY = sa.Numeric(78, 0)


def upgrade() -> None:
    op.create_table(
        "escrow_contracts",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.String(10), sa.ForeignKey("currencies.code"), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("buyer_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("seller_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("users.id"), index=True),
        sa.Column("seller_email", sa.String(320), index=True),
        sa.Column("hold_id", postgresql.UUID(as_uuid=True)),
        sa.Column("fee", MONEY),
        sa.Column("dispute_reason", sa.Text()),
        sa.Column("disputed_by", postgresql.UUID(as_uuid=True)),
        sa.Column("resolution", sa.String(20)),
        sa.Column("seller_amount", MONEY),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint(
            "state IN ('created', 'funded', 'released', 'disputed', 'resolved', 'cancelled')", name="state_known"
        ),
        sa.CheckConstraint("seller_id IS NULL OR seller_id <> buyer_id", name="seller_not_buyer"),
    )
    op.create_index("ix_escrow_contracts_created", "escrow_contracts", ["created_at", "id"])
    op.create_table(
        "escrow_evidence",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("escrow_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("escrow_contracts.id"), nullable=False,
                  index=True),
        sa.Column("filename", sa.String(120), nullable=False),
        sa.Column("content_type", sa.String(60), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("description", sa.String(1000)),
        sa.Column("uploaded_by", postgresql.UUID(as_uuid=True), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.Column("deleted_by", postgresql.UUID(as_uuid=True)),
    )


def downgrade() -> None:
    op.drop_table("escrow_evidence")
    op.drop_index("ix_escrow_contracts_created", "escrow_contracts")
    op.drop_table("escrow_contracts")
