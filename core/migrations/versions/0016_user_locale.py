"""users: the locale product emails are written in

Revision ID: 0016
Revises: 0002
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0002"  # users
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("locale", sa.String(35), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "locale")
