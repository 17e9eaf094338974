"""treasury, hot and cold: the hot wallets' levels, hot → cold transfers, refills signed offline

Revision ID: 0028
Revises: 0003
Create Date: 2026-12-14

Every refill, transfer and level is new: nothing to backfill.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0028"
down_revision = "0003"  # the ledger: the gas of these transfers is booked fees → network_fees
branch_labels = None
depends_on = None

MONEY = sa.Numeric(78, 0)
UUID = postgresql.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)
NOW = sa.func.now()


def _state_in(states: tuple[str, ...]) -> str:
    return "state IN (" + ", ".join(f"'{state}'" for state in states) + ")"


def upgrade() -> None:
    op.create_table(
        "treasury_hot_levels",
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("hot_wallet", sa.String(42), nullable=False),
        sa.Column("balance", MONEY, nullable=False),
        sa.Column("floor", MONEY, nullable=False),
        sa.Column("target", MONEY, nullable=False),
        sa.Column("ceiling", MONEY, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("checked_at", TS, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("chain", "asset", name="pk_treasury_hot_levels"),
        sa.CheckConstraint(_state_in(("ok", "below_floor", "above_ceiling")),
                           name="ck_treasury_hot_levels_state_known"),
    )

    op.create_table(
        "cold_transfers",
        sa.Column("id", UUID, nullable=False),
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("hot_wallet", sa.String(42), nullable=False),
        sa.Column("cold_wallet", sa.String(42), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("nonce", sa.BigInteger()),
        sa.Column("unsigned_tx", sa.Text()),
        sa.Column("request_digest", sa.String(64)),
        sa.Column("authorization", sa.String(100)),
        sa.Column("max_fee_per_gas", MONEY),
        sa.Column("max_priority_fee_per_gas", MONEY),
        sa.Column("sign_requested_at", TS),
        sa.Column("raw_tx", sa.Text()),
        sa.Column("tx_hash", sa.String(66)),
        sa.Column("sent_block", sa.BigInteger()),
        sa.Column("block_number", sa.BigInteger()),
        sa.Column("gas_cost", MONEY),
        sa.Column("reason", sa.String(60)),
        sa.Column("alert", sa.String(60)),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("id", name="pk_cold_transfers"),
        sa.CheckConstraint(_state_in(("pending", "signing", "signed", "broadcast", "confirmed", "failed", "refused",
                                      "dropped")), name="ck_cold_transfers_state_known"),
        sa.CheckConstraint("amount > 0", name="ck_cold_transfers_amount_positive"),
    )
    # One transfer in flight per chain and asset: the next check sees its surplus already on its way.
    op.create_index("uq_cold_transfers_active", "cold_transfers", ["chain", "asset"], unique=True,
                    postgresql_where=sa.text(_state_in(("pending", "signing", "signed", "broadcast"))))
    op.create_index("uq_cold_transfers_nonce", "cold_transfers", ["chain", "hot_wallet", "nonce"], unique=True,
                    postgresql_where=sa.text("nonce IS NOT NULL AND state NOT IN ('refused', 'dropped')"))

    op.create_table(
        "treasury_refills",
        sa.Column("id", UUID, nullable=False),
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("hot_balance", MONEY, nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("cold_wallet", sa.String(42), nullable=False),
        sa.Column("hot_wallet", sa.String(42), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("tx_to", sa.String(42), nullable=False),
        sa.Column("tx_value", MONEY, nullable=False),
        sa.Column("tx_data", sa.Text(), nullable=False),
        sa.Column("gas", sa.BigInteger(), nullable=False),
        sa.Column("max_fee_per_gas", MONEY, nullable=False),
        sa.Column("max_priority_fee_per_gas", MONEY, nullable=False),
        sa.Column("raw_tx", sa.Text()),
        sa.Column("tx_hash", sa.String(66)),
        sa.Column("submitted_by", UUID),
        sa.Column("submitted_at", TS),
        sa.Column("sent_block", sa.BigInteger()),
        sa.Column("block_number", sa.BigInteger()),
        sa.Column("gas_cost", MONEY),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("id", name="pk_treasury_refills"),
        sa.ForeignKeyConstraint(["submitted_by"], ["users.id"], name="fk_treasury_refills_submitted_by_users"),
        sa.CheckConstraint(_state_in(("open", "submitted", "confirmed", "failed", "expired")),
                           name="ck_treasury_refills_state_known"),
        sa.CheckConstraint("amount > 0", name="ck_treasury_refills_amount_positive"),
    )
    # One open refill per chain and asset: the custodian signs one at a time, and the next check waits for it.
    op.create_index("uq_treasury_refills_active", "treasury_refills", ["chain", "asset"], unique=True,
                    postgresql_where=sa.text(_state_in(("open", "submitted"))))
    op.create_index("ix_treasury_refills_created", "treasury_refills", ["created_at", "id"])


def downgrade() -> None:
    op.drop_table("treasury_refills")
    op.drop_table("cold_transfers")
    op.drop_table("treasury_hot_levels")
