"""treasury sweeps: deposit addresses swept to the hot wallet, their transactions, internal movements

Revision ID: 0027
Revises: 0009
Create Date: 2026-12-14

Every sweep and movement is new: nothing to backfill. Transfers between the platform's own addresses
recorded as deposits before this release stay deposits (the scanner only stops making new ones).
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0027"
down_revision = "0009"  # deposits: what is swept is what was deposited (and credited)
branch_labels = None
depends_on = None

MONEY = sa.Numeric(78, 0)
UUID = postgresql.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)
NOW = sa.func.now()
STATES = ("pending_topup", "topup_sent", "ready", "sweeping", "confirmed", "failed")
ACTIVE = ("pending_topup", "topup_sent", "ready", "sweeping")


def _in(states: tuple[str, ...]) -> str:
    return "state IN (" + ", ".join(f"'{state}'" for state in states) + ")"


def upgrade() -> None:
    op.create_table(
        "treasury_sweeps",
        sa.Column("id", UUID, nullable=False),
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("derivation_index", sa.Integer(), nullable=False),
        sa.Column("hot_wallet", sa.String(42), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("balance_block", sa.BigInteger(), nullable=False),
        sa.Column("gas_limit", sa.Integer(), nullable=False),
        sa.Column("max_fee_per_gas", MONEY, nullable=False),
        sa.Column("max_priority_fee_per_gas", MONEY, nullable=False),
        sa.Column("topup_amount", MONEY, nullable=False, server_default=sa.text("0")),
        sa.Column("topup_request_id", UUID, nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("topup_tx_hash", sa.String(66), nullable=True),
        sa.Column("sweep_tx_hash", sa.String(66), nullable=True),
        sa.Column("topup_gas_cost", MONEY, nullable=True),
        sa.Column("sweep_gas_cost", MONEY, nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("confirmations", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("failure_reason", sa.String(60), nullable=True),
        sa.Column("alert", sa.String(60), nullable=True),
        sa.Column("retry_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("id", name="pk_treasury_sweeps"),
        sa.ForeignKeyConstraint(["asset"], ["currencies.code"], name="fk_treasury_sweeps_asset_currencies"),
        sa.CheckConstraint(_in(STATES), name="ck_treasury_sweeps_state_known"),
        sa.CheckConstraint("amount > 0 AND topup_amount >= 0 AND gas_limit > 0 AND max_fee_per_gas > 0"
                           " AND max_priority_fee_per_gas >= 0", name="ck_treasury_sweeps_amounts_valid"),
        sa.CheckConstraint("derivation_index BETWEEN 0 AND 2147483647", name="ck_treasury_sweeps_index_not_hardened"),
    )
    # One sweep in progress per deposit address: its nonce and its native coin serve every asset.
    op.create_index("uq_treasury_sweeps_address_active", "treasury_sweeps", ["chain", "address"], unique=True,
                    postgresql_where=sa.text(_in(ACTIVE)))
    op.create_index("ix_treasury_sweeps_active", "treasury_sweeps", ["state"], postgresql_where=sa.text(_in(ACTIVE)))
    op.create_index("ix_treasury_sweeps_created", "treasury_sweeps", ["created_at", "id"])
    op.create_index("ix_treasury_sweeps_address_asset", "treasury_sweeps", ["chain", "address", "asset", "created_at"])

    op.create_table(
        "treasury_sweep_transactions",
        sa.Column("id", UUID, nullable=False),
        sa.Column("sweep_id", UUID, nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("request_id", UUID, nullable=False),
        sa.Column("attempt", sa.SmallInteger(), nullable=False),
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("sender", sa.String(42), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("nonce_released", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("value", MONEY, nullable=False),
        sa.Column("unsigned_tx", sa.Text(), nullable=False),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("authorization", sa.String(100), nullable=False),
        sa.Column("max_fee_per_gas", MONEY, nullable=False),
        sa.Column("max_priority_fee_per_gas", MONEY, nullable=False),
        sa.Column("requested_at", TS, nullable=False, server_default=NOW),
        sa.Column("requested_block", sa.BigInteger(), nullable=True),
        sa.Column("sign_requested_at", TS, nullable=True),
        sa.Column("raw_tx", sa.Text(), nullable=True),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("signed_at", TS, nullable=True),
        sa.Column("broadcast_at", TS, nullable=True),
        sa.Column("broadcast_block", sa.BigInteger(), nullable=True),
        sa.Column("sent_block", sa.BigInteger(), nullable=True),
        sa.Column("refusal", sa.String(60), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.SmallInteger(), nullable=True),
        sa.Column("gas_cost", MONEY, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_treasury_sweep_transactions"),
        sa.ForeignKeyConstraint(["sweep_id"], ["treasury_sweeps.id"],
                                name="fk_treasury_sweep_transactions_sweep_id_treasury_sweeps"),
        sa.CheckConstraint("kind IN ('topup', 'sweep')", name="ck_treasury_sweep_transactions_kind_known"),
        sa.UniqueConstraint("request_id", "attempt", name="uq_treasury_sweep_transactions_attempt"),
        sa.UniqueConstraint("request_id", "request_digest", name="uq_treasury_sweep_transactions_digest"),
    )
    op.create_index("uq_treasury_sweep_transactions_tx_hash", "treasury_sweep_transactions", ["tx_hash"],
                    unique=True, postgresql_where=sa.text("tx_hash IS NOT NULL"))
    op.create_index("uq_treasury_sweep_transactions_nonce", "treasury_sweep_transactions",
                    ["chain", "sender", "nonce"], unique=True,
                    postgresql_where=sa.text("attempt = 1 AND NOT nonce_released"))
    op.create_index("ix_treasury_sweep_transactions_sweep", "treasury_sweep_transactions",
                    ["sweep_id", "requested_at"])

    op.create_table(
        "treasury_movements",
        sa.Column("id", UUID, nullable=False),
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("tx_log_index", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("from_address", sa.String(42), nullable=False),
        sa.Column("to_address", sa.String(42), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("id", name="pk_treasury_movements"),
        sa.UniqueConstraint("chain", "tx_hash", "tx_log_index", name="uq_treasury_movements_event"),
        sa.CheckConstraint("amount > 0", name="ck_treasury_movements_amount_positive"),
    )
    op.create_index("ix_treasury_movements_chain_block", "treasury_movements", ["chain", "block_number"])


def downgrade() -> None:
    op.drop_table("treasury_movements")
    op.drop_table("treasury_sweep_transactions")
    op.drop_table("treasury_sweeps")
