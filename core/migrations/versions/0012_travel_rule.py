"""travel rule: IVMS101 transfers exchanged with counterparty VASPs

Revision ID: 0012
Revises: 0010
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0010"  # withdrawals: an outbound transfer names one
branch_labels = None
# deposits (an inbound transfer names one); compliance (its refuse-change trigger function).
depends_on = ("0009", "0011")

MONEY = sa.Numeric(78, 0)
UUID = postgresql.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)
NOW = sa.func.now()
STATES = ("draft", "sent", "accepted", "rejected", "expired")
LIVE = "'draft', 'sent', 'accepted'"


def upgrade() -> None:
    op.create_table(
        "travel_rule_transfers",
        sa.Column("id", UUID, nullable=False),
        sa.Column("external_id", sa.String(200), nullable=True),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("originator", postgresql.JSONB(), nullable=False),
        sa.Column("beneficiary", postgresql.JSONB(), nullable=False),
        sa.Column("originating_vasp", postgresql.JSONB(), nullable=False),
        sa.Column("beneficiary_vasp", postgresql.JSONB(), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("destination", sa.String(128), nullable=False),
        sa.Column("tx_hash", sa.String(128), nullable=True),
        sa.Column("withdrawal_id", UUID, nullable=True),
        sa.Column("deposit_id", UUID, nullable=True),
        sa.Column("user_id", UUID, nullable=True),
        sa.Column("travel_address", sa.Text(), nullable=True),
        sa.Column("request_identifier", sa.String(200), nullable=False),
        sa.Column("callback_url", sa.Text(), nullable=True),
        sa.Column("counterparty", sa.String(200), nullable=True),
        sa.Column("wire_ivms101", postgresql.JSONB(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_by", UUID, nullable=True),
        sa.Column("decided_by", UUID, nullable=True),
        sa.Column("send_requested_at", TS, nullable=True),
        sa.Column("sent_at", TS, nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("created_at", TS, server_default=NOW, nullable=False),
        sa.Column("updated_at", TS, server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_travel_rule_transfers"),
        sa.UniqueConstraint("external_id", name="uq_travel_rule_transfers_external_id"),
        # One record per side of a TRP exchange: two identities of one deployment may hold both.
        sa.UniqueConstraint("direction", "request_identifier", name="uq_travel_rule_transfers_direction_request"),
        sa.ForeignKeyConstraint(["asset"], ["currencies.code"], name="fk_travel_rule_transfers_asset_currencies"),
        sa.ForeignKeyConstraint(["withdrawal_id"], ["withdrawals.id"],
                                name="fk_travel_rule_transfers_withdrawal_id_withdrawals"),
        sa.ForeignKeyConstraint(["deposit_id"], ["deposits.id"], name="fk_travel_rule_transfers_deposit_id_deposits"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_travel_rule_transfers_user_id_users"),
        sa.CheckConstraint("state IN (" + ", ".join(f"'{state}'" for state in STATES) + ")",
                           name="ck_travel_rule_transfers_state_known"),
        sa.CheckConstraint("direction IN ('outbound', 'inbound')", name="ck_travel_rule_transfers_direction_known"),
        sa.CheckConstraint("amount > 0", name="ck_travel_rule_transfers_amount_positive"),
        sa.CheckConstraint("(direction = 'outbound' AND deposit_id IS NULL)"
                           " OR (direction = 'inbound' AND withdrawal_id IS NULL)",
                           name="ck_travel_rule_transfers_link_matches_direction"),
        sa.CheckConstraint("(state IN ('accepted', 'rejected')) = (decided_at IS NOT NULL)",
                           name="ck_travel_rule_transfers_decided_when_final"),
        sa.CheckConstraint("state IN ('draft', 'expired') OR sent_at IS NOT NULL", name="ck_travel_rule_transfers_sent_has_time"),
    )
    op.create_index("ix_travel_rule_transfers_created", "travel_rule_transfers", ["created_at", "id"])
    op.create_index("ix_travel_rule_transfers_state_created", "travel_rule_transfers", ["state", "created_at"])
    op.create_index("ix_travel_rule_transfers_direction_created", "travel_rule_transfers",
                    ["direction", "created_at"])
    op.create_index("ix_travel_rule_transfers_expiring", "travel_rule_transfers", ["expires_at"],
                    postgresql_where=sa.text("state IN ('draft', 'sent')"))
    op.create_index("uq_travel_rule_transfers_withdrawal_live", "travel_rule_transfers", ["withdrawal_id"],
                    unique=True, postgresql_where=sa.text(f"withdrawal_id IS NOT NULL AND state IN ({LIVE})"))
    op.create_index("uq_travel_rule_transfers_deposit_live", "travel_rule_transfers", ["deposit_id"],
                    unique=True, postgresql_where=sa.text(f"deposit_id IS NOT NULL AND state IN ({LIVE})"))
    op.create_index("ix_travel_rule_transfers_user", "travel_rule_transfers", ["user_id", "created_at"])
    # A regulator may ask years later: transfers change state (each change an audit event) but
    # are never removed (the function is migration 0011's).
    op.execute("CREATE TRIGGER travel_rule_transfers_no_delete BEFORE DELETE ON travel_rule_transfers"
               " FOR EACH ROW EXECUTE FUNCTION compliance_refuse_change()")
    op.execute("CREATE TRIGGER travel_rule_transfers_no_truncate BEFORE TRUNCATE ON travel_rule_transfers"
               " FOR EACH STATEMENT EXECUTE FUNCTION compliance_refuse_change()")


def downgrade() -> None:
    op.drop_table("travel_rule_transfers")
