"""address book: an entry may be limited to one asset; turning the allowlist off takes a cooling-off

Revision ID: 0032
Revises: 0026
Create Date: 2027-01-08

Existing entries get no asset (any asset of their chain, as before) and no book has a turn-off pending.
A downgrade fails closed: an entry limited to one asset would allow every asset without the column, so
it is removed, and an allowlist whose turn-off is still pending stays on.
"""
import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0026"  # the address book
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("address_book_entries", sa.Column("asset", sa.String(10), nullable=True))
    op.add_column("address_books", sa.Column("allowlist_off_at", TS, nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM address_book_entries WHERE asset IS NOT NULL")
    op.execute("UPDATE address_books SET allowlist_enabled = true WHERE allowlist_off_at > now()")
    op.drop_column("address_books", "allowlist_off_at")
    op.drop_column("address_book_entries", "asset")
