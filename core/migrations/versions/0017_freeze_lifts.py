"""withdrawal_freezes: who lifted a freeze and why (lifted only through the audited compliance route)

Revision ID: 0017
Revises: 0010
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0017"
down_revision = "0010"  # withdrawals: the freezes table
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("withdrawal_freezes", sa.Column("lifted_by", UUID(as_uuid=True), nullable=True))
    op.add_column("withdrawal_freezes", sa.Column("lift_reason", sa.String(500), nullable=True))
    op.create_foreign_key("fk_withdrawal_freezes_lifted_by_users", "withdrawal_freezes", "users", ["lifted_by"], ["id"])
    op.create_index("ix_withdrawal_freezes_user_created", "withdrawal_freezes", ["user_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_withdrawal_freezes_user_created", "withdrawal_freezes")
    op.drop_constraint("fk_withdrawal_freezes_lifted_by_users", "withdrawal_freezes", type_="foreignkey")
    op.drop_column("withdrawal_freezes", "lift_reason")
    op.drop_column("withdrawal_freezes", "lifted_by")
