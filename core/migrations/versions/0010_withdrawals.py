"""withdrawals: requests, approvals, transaction attempts, hot wallet nonces, withdrawal freezes

Revision ID: 0010
Revises: 0005
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0005"
branch_labels = None
depends_on = "0003"  # the ledger: a withdrawal's money is a hold

MONEY = sa.Numeric(78, 0)
UUID = postgresql.UUID(as_uuid=True)
NOW = sa.func.now()
STATES = ("requested", "pending_approval", "approved", "signing", "signed", "broadcast", "confirmed", "failed",
          "rolled_back")


def upgrade() -> None:
    op.create_table(
        "withdrawals",
        sa.Column("id", UUID, nullable=False),
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("to_address", sa.String(42), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("fee", MONEY, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("hold_id", UUID, nullable=False),
        sa.Column("approvals_required", sa.SmallInteger(), nullable=False),
        sa.Column("travel_rule", postgresql.JSONB(), nullable=True),
        sa.Column("hot_wallet", sa.String(42), nullable=True),
        sa.Column("nonce", sa.BigInteger(), nullable=True),
        sa.Column("nonce_released", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("sign_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("confirmations", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("gas_cost", MONEY, nullable=True),
        sa.Column("failure_reason", sa.String(60), nullable=True),
        sa.Column("broadcast_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("id", name="pk_withdrawals"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_withdrawals_user_id_users"),
        sa.ForeignKeyConstraint(["hold_id"], ["ledger_holds.id"], name="fk_withdrawals_hold_id_ledger_holds"),
        sa.UniqueConstraint("hold_id", name="uq_withdrawals_hold_id"),
        sa.CheckConstraint("state IN (" + ", ".join(f"'{state}'" for state in STATES) + ")",
                           name="ck_withdrawals_state_known"),
        sa.CheckConstraint("amount > 0 AND fee >= 0", name="ck_withdrawals_amounts_valid"),
        sa.CheckConstraint("approvals_required BETWEEN 1 AND 2", name="ck_withdrawals_approvals_required_range"),
    )
    op.create_index("ix_withdrawals_user_created", "withdrawals", ["user_id", "created_at"])
    op.create_index("ix_withdrawals_active", "withdrawals", ["state"],
                    postgresql_where=sa.text("state IN ('approved', 'signing', 'signed', 'broadcast')"))
    # One (chain, hot wallet, nonce), one withdrawal: a nonce given back by a refusal may be reused.
    op.create_index("uq_withdrawals_nonce", "withdrawals", ["chain", "hot_wallet", "nonce"], unique=True,
                    postgresql_where=sa.text("nonce IS NOT NULL AND NOT nonce_released"))

    op.create_table(
        "withdrawal_approvals",
        sa.Column("id", UUID, nullable=False),
        sa.Column("withdrawal_id", UUID, nullable=False),
        sa.Column("operator_id", UUID, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("id", name="pk_withdrawal_approvals"),
        sa.ForeignKeyConstraint(["withdrawal_id"], ["withdrawals.id"],
                                name="fk_withdrawal_approvals_withdrawal_id_withdrawals"),
        sa.ForeignKeyConstraint(["operator_id"], ["users.id"], name="fk_withdrawal_approvals_operator_id_users"),
        sa.UniqueConstraint("withdrawal_id", "operator_id", name="uq_withdrawal_approvals_operator"),
    )

    op.create_table(
        "withdrawal_attempts",
        sa.Column("id", UUID, nullable=False),
        sa.Column("withdrawal_id", UUID, nullable=False),
        sa.Column("attempt", sa.SmallInteger(), nullable=False),
        sa.Column("unsigned_tx", sa.Text(), nullable=False),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("authorization", sa.String(100), nullable=False),
        sa.Column("max_fee_per_gas", MONEY, nullable=False),
        sa.Column("max_priority_fee_per_gas", MONEY, nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("raw_tx", sa.Text(), nullable=True),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("broadcast_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("broadcast_block", sa.BigInteger(), nullable=True),
        sa.Column("refusal", sa.String(60), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_withdrawal_attempts"),
        sa.ForeignKeyConstraint(["withdrawal_id"], ["withdrawals.id"],
                                name="fk_withdrawal_attempts_withdrawal_id_withdrawals"),
        sa.UniqueConstraint("withdrawal_id", "attempt", name="uq_withdrawal_attempts_number"),
        sa.UniqueConstraint("request_digest", name="uq_withdrawal_attempts_digest"),
    )
    op.create_index("uq_withdrawal_attempts_tx_hash", "withdrawal_attempts", ["tx_hash"], unique=True,
                    postgresql_where=sa.text("tx_hash IS NOT NULL"))

    op.create_table(
        "hot_wallet_nonces",
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("next_nonce", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("chain", "address", name="pk_hot_wallet_nonces"),
        sa.CheckConstraint("next_nonce >= 0", name="ck_hot_wallet_nonces_not_negative"),
    )
    op.create_table(
        "hot_wallet_released_nonces",
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("chain", "address", "nonce", name="pk_hot_wallet_released_nonces"),
    )

    op.create_table(
        "withdrawal_freezes",
        sa.Column("id", UUID, nullable=False),
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_withdrawal_freezes"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_withdrawal_freezes_user_id_users"),
    )
    op.create_index("ix_withdrawal_freezes_active", "withdrawal_freezes", ["user_id"],
                    postgresql_where=sa.text("lifted_at IS NULL"))


def downgrade() -> None:
    op.drop_table("withdrawal_freezes")
    op.drop_table("hot_wallet_released_nonces")
    op.drop_table("hot_wallet_nonces")
    op.drop_table("withdrawal_attempts")
    op.drop_table("withdrawal_approvals")
    op.drop_table("withdrawals")
