"""deposits, scanner cursors, recently scanned blocks

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0005"  # deposit addresses: a deposit is money sent to one of them
branch_labels = None
depends_on = "0003"  # the ledger: deposits name their currency and their credit transfer

MONEY = sa.Numeric(78, 0)
UUID = postgresql.UUID(as_uuid=True)
NOW = sa.func.now()
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "deposits",
        sa.Column("id", UUID, nullable=False),
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("from_address", sa.String(42), nullable=True),
        sa.Column("to_address", sa.String(42), nullable=False),
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("state", sa.String(12), nullable=False, server_default=sa.text("'seen'")),
        sa.Column("confirmations", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("required_confirmations", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("credits", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("credit_transfer_id", UUID, nullable=True),
        sa.Column("credit_requested_at", TIMESTAMP, nullable=True),
        sa.Column("reversal_requested_at", TIMESTAMP, nullable=True),
        sa.Column("credited_at", TIMESTAMP, nullable=True),
        sa.Column("reorged_at", TIMESTAMP, nullable=True),
        sa.Column("reversed_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False, server_default=NOW),
        sa.Column("updated_at", TIMESTAMP, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("id", name="pk_deposits"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_deposits_user_id_users"),
        sa.ForeignKeyConstraint(["asset"], ["currencies.code"], name="fk_deposits_asset_currencies"),
        sa.ForeignKeyConstraint(["credit_transfer_id"], ["ledger_transfers.id"],
                                name="fk_deposits_credit_transfer_id_ledger_transfers"),
        sa.UniqueConstraint("chain", "tx_hash", "log_index", name="uq_deposits_chain_tx_hash_log_index"),
        sa.CheckConstraint("state IN ('seen', 'confirming', 'credited', 'reorged')", name="ck_deposits_state_known"),
        sa.CheckConstraint("source IN ('scanner', 'ingest')", name="ck_deposits_source_known"),
        sa.CheckConstraint("amount > 0", name="ck_deposits_amount_positive"),
        sa.CheckConstraint("log_index >= -1", name="ck_deposits_log_index_range"),
        sa.CheckConstraint("confirmations >= 0 AND required_confirmations >= 1", name="ck_deposits_confirmations_range"),
        sa.CheckConstraint("state <> 'credited' OR credit_transfer_id IS NOT NULL", name="ck_deposits_credited_has_credit"),
    )
    op.create_index("ix_deposits_user_created", "deposits", ["user_id", "created_at", "id"])
    op.create_index("ix_deposits_chain_block", "deposits", ["chain", "block_number"])
    op.create_index("ix_deposits_waiting", "deposits", ["chain", "block_number"],
                    postgresql_where=sa.text("state IN ('seen', 'confirming')"))

    # The scanner's address book reads the deposit addresses assigned since its last look.
    op.create_index("ix_deposit_addresses_assigned", "deposit_addresses", ["chain", "assigned_at"],
                    postgresql_where=sa.text("user_id IS NOT NULL"))

    op.create_table(
        "scanner_cursors",
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("height", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(66), nullable=True),
        sa.Column("start_height", sa.BigInteger(), nullable=False),
        sa.Column("head", sa.BigInteger(), nullable=True),
        sa.Column("progressed_at", TIMESTAMP, nullable=False, server_default=NOW),
        sa.Column("checked_at", TIMESTAMP, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("chain", name="pk_scanner_cursors"),
        sa.CheckConstraint("height >= -1", name="ck_scanner_cursors_height_range"),
    )
    op.create_table(
        "scanned_blocks",
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(66), nullable=False),
        sa.Column("parent_hash", sa.String(66), nullable=False),
        sa.PrimaryKeyConstraint("chain", "number", name="pk_scanned_blocks"),
    )


def downgrade() -> None:
    op.drop_index("ix_deposit_addresses_assigned", table_name="deposit_addresses")
    op.drop_table("scanned_blocks")
    op.drop_table("scanner_cursors")
    op.drop_table("deposits")
