"""idempotency_records: the claim version that fences a request's completion

Revision ID: 0018
Revises: 0004
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0004"  # the idempotency records
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("idempotency_records", sa.Column("claim_version", sa.Integer(), nullable=False,
                                                   server_default=sa.text("1")))


def downgrade() -> None:
    op.drop_column("idempotency_records", "claim_version")
