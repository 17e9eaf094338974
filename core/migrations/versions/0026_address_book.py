"""address book: a user's saved withdrawal destinations and the allowlist setting

Revision ID: 0026
Revises: 0010
Create Date: 2026-12-12

Existing users have no row in ``address_books``: their allowlist is off, as it is for a new user.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0026"
down_revision = "0010"  # withdrawals: the allowlist is one of a withdrawal request's checks
branch_labels = None
depends_on = None

UUID = postgresql.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "address_books",
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("allowlist_enabled", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("user_id", name="pk_address_books"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_address_books_user_id_users"),
    )
    op.create_table(
        "address_book_entries",
        sa.Column("id", UUID, nullable=False),
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("usable_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_address_book_entries"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_address_book_entries_user_id_users"),
        sa.UniqueConstraint("user_id", "chain", "address", name="uq_address_book_entries_destination"),
    )
    op.create_index("ix_address_book_entries_user_created", "address_book_entries", ["user_id", "created_at"])


def downgrade() -> None:
    op.drop_table("address_book_entries")
    op.drop_table("address_books")
