"""withdrawals: cancels, fillers of released nonces, re-broadcasts, fee alerts; request digests per withdrawal

Revision ID: 0020
Revises: 0013
Create Date: 2026-12-08
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0020"
down_revision = "0013"  # withdrawals and their attempts (0010), as 0013 left them
branch_labels = None
depends_on = None

MONEY = sa.Numeric(78, 0)
UUID = postgresql.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)
NOW = sa.func.now()
FILLER_STATES = ("pending", "signing", "signed", "broadcast", "mined", "refused")


def upgrade() -> None:
    # The digest covers the transaction only: two withdrawals may ask for the very same one (the
    # same payment at a nonce given back by a refusal). It names an attempt within its withdrawal.
    op.drop_constraint("uq_withdrawal_attempts_digest", "withdrawal_attempts", type_="unique")
    op.create_unique_constraint("uq_withdrawal_attempts_withdrawal_digest", "withdrawal_attempts",
                                ["withdrawal_id", "request_digest"])
    op.add_column("withdrawal_attempts", sa.Column("kind", sa.String(10), nullable=False,
                                                   server_default=sa.text("'payment'")))
    op.create_check_constraint("ck_withdrawal_attempts_kind_known", "withdrawal_attempts",
                               "kind IN ('payment', 'cancel')")
    op.add_column("withdrawal_attempts", sa.Column("requested_block", sa.BigInteger(), nullable=True))
    op.add_column("withdrawal_attempts", sa.Column("sent_block", sa.BigInteger(), nullable=True))
    op.add_column("withdrawal_attempts", sa.Column("rejected_block", sa.BigInteger(), nullable=True))
    op.add_column("withdrawals", sa.Column("alert", sa.String(60), nullable=True))
    op.add_column("withdrawals", sa.Column("cancel_requested_at", TS, nullable=True))

    op.create_table(
        "nonce_fillers",
        sa.Column("id", UUID, nullable=False),
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("unsigned_tx", sa.Text(), nullable=True),
        sa.Column("request_digest", sa.String(64), nullable=True),
        sa.Column("authorization", sa.String(100), nullable=True),
        sa.Column("max_fee_per_gas", MONEY, nullable=True),
        sa.Column("max_priority_fee_per_gas", MONEY, nullable=True),
        sa.Column("sign_requested_at", TS, nullable=True),
        sa.Column("raw_tx", sa.Text(), nullable=True),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("sent_block", sa.BigInteger(), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("gas_cost", MONEY, nullable=True),
        sa.Column("refusal", sa.String(60), nullable=True),
        sa.Column("alert", sa.String(60), nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("id", name="pk_nonce_fillers"),
        sa.CheckConstraint("state IN (" + ", ".join(f"'{state}'" for state in FILLER_STATES) + ")",
                           name="ck_nonce_fillers_state_known"),
    )
    # One live filler per (chain, hot wallet, nonce); a refused one gave its nonce back.
    op.create_index("uq_nonce_fillers_nonce", "nonce_fillers", ["chain", "address", "nonce"], unique=True,
                    postgresql_where=sa.text("state <> 'refused'"))
    op.create_index("ix_nonce_fillers_active", "nonce_fillers", ["state"],
                    postgresql_where=sa.text("state IN ('pending', 'signing', 'signed', 'broadcast')"))


def downgrade() -> None:
    op.drop_table("nonce_fillers")
    op.drop_column("withdrawals", "cancel_requested_at")
    op.drop_column("withdrawals", "alert")
    for column in ("rejected_block", "sent_block", "requested_block"):
        op.drop_column("withdrawal_attempts", column)
    op.drop_constraint("ck_withdrawal_attempts_kind_known", "withdrawal_attempts", type_="check")
    op.drop_column("withdrawal_attempts", "kind")
    op.drop_constraint("uq_withdrawal_attempts_withdrawal_digest", "withdrawal_attempts", type_="unique")
    op.create_unique_constraint("uq_withdrawal_attempts_digest", "withdrawal_attempts", ["request_digest"])
