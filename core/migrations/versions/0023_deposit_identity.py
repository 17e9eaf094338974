"""deposits: keyed on the log's index within its transaction; revisions, orphaned rows, receivables

Revision ID: 0023
Revises: 0009
Create Date: 2026-12-08

A token deposit was unique on ``(chain, tx_hash, log_index)``, the log's place in its *block*: a
reorg can mine the same transaction at another place, and the same log then became a second row
(credited again) while the old row was revived with stale content. The key is now the log's index
within its transaction (``tx_log_index``; -1 for the native coin, as before), unique among the rows
that are not ``orphaned``; a key found again with another recipient, asset or amount orphans its row
and is recorded again as the next ``revision`` (which ``supersedes`` it). ``receivable`` is what a
deposit's reversals booked as owed and no later credit settled yet.

Rows recorded before this revision: native ones get ``tx_log_index = -1``; a token row's index within
its transaction cannot be computed without the node, so it stays NULL and the scanner matches such a
row by its block position, as before (their ledger references are unchanged too).
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0023"
down_revision = "0009"  # deposits
branch_labels = None
depends_on = None

MONEY = sa.Numeric(78, 0)
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("deposits", sa.Column("tx_log_index", sa.Integer(), nullable=True))
    op.add_column("deposits", sa.Column("revision", sa.Integer(), nullable=False, server_default=sa.text("1")))
    op.add_column("deposits", sa.Column("supersedes", postgresql.UUID(as_uuid=True), nullable=True))
    op.add_column("deposits", sa.Column("receivable", MONEY, nullable=False, server_default=sa.text("0")))
    op.add_column("deposits", sa.Column("orphaned_at", TIMESTAMP, nullable=True))
    op.execute("UPDATE deposits SET tx_log_index = -1 WHERE log_index = -1")
    op.create_foreign_key("fk_deposits_supersedes_deposits", "deposits", "deposits", ["supersedes"], ["id"])

    op.drop_constraint("uq_deposits_chain_tx_hash_log_index", "deposits", type_="unique")
    op.create_index("uq_deposits_identity", "deposits", ["chain", "tx_hash", "tx_log_index"], unique=True,
                    postgresql_where=sa.text("state <> 'orphaned'"))
    op.create_unique_constraint("uq_deposits_identity_revision", "deposits",
                                ["chain", "tx_hash", "tx_log_index", "revision"])
    # Lookups of a legacy token row by its block position, and of a key's earlier revisions.
    op.create_index("ix_deposits_chain_tx_hash", "deposits", ["chain", "tx_hash"])

    op.drop_constraint("ck_deposits_state_known", "deposits", type_="check")
    op.create_check_constraint("ck_deposits_state_known", "deposits",
                               "state IN ('seen', 'confirming', 'credited', 'reorged', 'orphaned')")
    op.create_check_constraint("ck_deposits_tx_log_index_range", "deposits",
                               "tx_log_index IS NULL OR (tx_log_index = -1) = (log_index = -1)")
    op.create_check_constraint("ck_deposits_revision_range", "deposits",
                               "revision >= 1 AND (revision = 1) = (supersedes IS NULL)")
    op.create_check_constraint("ck_deposits_receivable_range", "deposits", "receivable >= 0")


def downgrade() -> None:
    # Refused while orphaned rows exist: the old key cannot hold two rows of one chain event.
    op.execute("DO $$ BEGIN IF EXISTS (SELECT 1 FROM deposits WHERE state = 'orphaned' OR revision > 1) THEN"
               " RAISE EXCEPTION 'deposits has orphaned rows or revisions: cannot go back to one row per"
               " (chain, tx_hash, log_index)'; END IF; END $$")
    op.drop_constraint("ck_deposits_receivable_range", "deposits", type_="check")
    op.drop_constraint("ck_deposits_revision_range", "deposits", type_="check")
    op.drop_constraint("ck_deposits_tx_log_index_range", "deposits", type_="check")
    op.drop_constraint("ck_deposits_state_known", "deposits", type_="check")
    op.create_check_constraint("ck_deposits_state_known", "deposits",
                               "state IN ('seen', 'confirming', 'credited', 'reorged')")
    op.drop_index("ix_deposits_chain_tx_hash", table_name="deposits")
    op.drop_constraint("uq_deposits_identity_revision", "deposits", type_="unique")
    op.drop_index("uq_deposits_identity", table_name="deposits")
    op.create_unique_constraint("uq_deposits_chain_tx_hash_log_index", "deposits", ["chain", "tx_hash", "log_index"])
    op.drop_constraint("fk_deposits_supersedes_deposits", "deposits", type_="foreignkey")
    for column in ("orphaned_at", "receivable", "supersedes", "revision", "tx_log_index"):
        op.drop_column("deposits", column)
