"""compliance: prices (seeded), KYC cases, sanctioned addresses and names, compliance reports, transaction reviews,
the automatic rules' cursor

Revision ID: 0011
Revises: 0003
Create Date: 2026-11-26
"""
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0003"
branch_labels = None
depends_on = "0002"  # users

UUID = postgresql.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)
NOW = sa.func.now()
PRICE = sa.Numeric(38, 18)

# Devnet and test prices: fixed, dated 2000-01-01 so that any period can be converted. An operator
# adds real prices (newer as_of) in production; a conversion uses the latest at or before its moment.
SEED_AS_OF = datetime(2000, 1, 1, tzinfo=UTC)
SEED_SOURCE = "seed: fixed devnet price (migration 0011)"
SEED_PRICES = {
    "ETH": {"USD": "3000", "EUR": "2760", "CAD": "4110"},
    "POL": {"USD": "0.5", "EUR": "0.46", "CAD": "0.685"},
    "USDC": {"USD": "1", "EUR": "0.92", "CAD": "1.37"},
    "USD": {"USD": "1", "EUR": "0.92", "CAD": "1.37"},
}

APPEND_ONLY = ("prices", "sanctioned_addresses", "sanctioned_names")
NO_DELETE = ("kyc_cases", "compliance_reports", "transaction_reviews")


def upgrade() -> None:
    prices = op.create_table(
        "prices",
        sa.Column("id", UUID, nullable=False),
        sa.Column("base", sa.String(10), nullable=False),
        sa.Column("quote", sa.String(10), nullable=False),
        sa.Column("price", PRICE, nullable=False),
        sa.Column("as_of", TS, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("created_at", TS, server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prices"),
        sa.UniqueConstraint("base", "quote", "as_of", name="uq_prices_base_quote_as_of"),
        sa.CheckConstraint("price > 0", name="ck_prices_price_positive"),
    )
    op.bulk_insert(prices, [
        {"id": uuid.uuid4(), "base": base, "quote": quote, "price": Decimal(price),
         "as_of": SEED_AS_OF, "source": SEED_SOURCE}
        for base, quotes in SEED_PRICES.items() for quote, price in quotes.items()
    ])

    op.create_table(
        "kyc_cases",
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("last_name", sa.String(100), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("address", postgresql.JSONB(), nullable=False),
        sa.Column("screening_hit", postgresql.JSONB(), nullable=True),
        sa.Column("submitted_at", TS, nullable=False),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("decided_by", UUID, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", TS, server_default=NOW, nullable=False),
        sa.Column("updated_at", TS, server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_kyc_cases"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_kyc_cases_user_id_users"),
        sa.CheckConstraint("state IN ('pending', 'approved', 'rejected', 'needs_info')", name="ck_kyc_cases_state_known"),
    )
    op.create_index("ix_kyc_cases_state_submitted", "kyc_cases", ["state", "submitted_at"])

    op.create_table(
        "sanctioned_addresses",
        sa.Column("id", UUID, nullable=False),
        sa.Column("address", sa.String(128), nullable=False),
        sa.Column("currency", sa.String(20), nullable=True),
        sa.Column("entity_name", sa.String(300), nullable=True),
        sa.Column("list_uid", sa.String(40), nullable=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("loaded_at", TS, server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sanctioned_addresses"),
        sa.UniqueConstraint("address", "source", name="uq_sanctioned_addresses_address_source"),
    )
    op.create_index("ix_sanctioned_addresses_address", "sanctioned_addresses", ["address"])

    op.create_table(
        "sanctioned_names",
        sa.Column("id", UUID, nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("name_key", sa.String(300), nullable=False),
        sa.Column("list_uid", sa.String(40), nullable=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("loaded_at", TS, server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sanctioned_names"),
        sa.UniqueConstraint("name_key", "source", name="uq_sanctioned_names_name_key_source"),
    )
    op.create_index("ix_sanctioned_names_name_key", "sanctioned_names", ["name_key"])

    op.create_table(
        "compliance_reports",
        sa.Column("id", UUID, nullable=False),
        sa.Column("jurisdiction", sa.String(10), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("period_start", TS, nullable=False),
        sa.Column("period_end", TS, nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("requested_by", UUID, nullable=True),
        sa.Column("unique_key", sa.String(200), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("json_sha256", sa.String(64), nullable=True),
        sa.Column("csv_path", sa.String(500), nullable=True),
        sa.Column("json_path", sa.String(500), nullable=True),
        sa.Column("parameters", postgresql.JSONB(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("created_at", TS, server_default=NOW, nullable=False),
        sa.Column("updated_at", TS, server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_compliance_reports"),
        sa.UniqueConstraint("unique_key", name="uq_compliance_reports_unique_key"),
        sa.CheckConstraint("state IN ('queued', 'running', 'ready', 'failed')", name="ck_compliance_reports_state_known"),
        sa.CheckConstraint("period_end > period_start", name="ck_compliance_reports_period_ordered"),
    )
    op.create_index("ix_compliance_reports_jurisdiction_created", "compliance_reports",
                    ["jurisdiction", "created_at", "id"])

    op.create_table(
        "transaction_reviews",
        sa.Column("transfer_id", UUID, nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("flagged_by", UUID, nullable=True),
        sa.Column("flagged_at", TS, nullable=False),
        sa.Column("resolution_note", sa.Text(), nullable=True),
        sa.Column("resolved_by", UUID, nullable=True),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("created_at", TS, server_default=NOW, nullable=False),
        sa.Column("updated_at", TS, server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("transfer_id", name="pk_transaction_reviews"),
        sa.ForeignKeyConstraint(["transfer_id"], ["ledger_transfers.id"],
                                name="fk_transaction_reviews_transfer_id_ledger_transfers"),
        sa.CheckConstraint("state IN ('flagged', 'cleared', 'reported')", name="ck_transaction_reviews_state_known"),
        sa.CheckConstraint("(state = 'flagged') = (resolved_at IS NULL)", name="ck_transaction_reviews_resolved"),
    )
    op.create_index("ix_transaction_reviews_state", "transaction_reviews", ["state"])

    op.create_table(
        "compliance_rule_cursors",
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("last_created_at", TS, nullable=False),
        sa.Column("last_transfer_id", UUID, nullable=False),
        sa.Column("updated_at", TS, server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_compliance_rule_cursors"),
    )

    # Every record is auditable and nothing is deleted: lists and prices are append-only, cases
    # and reports change state (each change has its audit event) but are never removed.
    op.execute("""
        CREATE FUNCTION compliance_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% keeps every record: % refused', TG_TABLE_NAME, TG_OP;
        END
        $$
    """)
    for table in APPEND_ONLY:
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
                   " FOR EACH ROW EXECUTE FUNCTION compliance_refuse_change()")
    for table in NO_DELETE:
        op.execute(f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}"
                   " FOR EACH ROW EXECUTE FUNCTION compliance_refuse_change()")
    for table in APPEND_ONLY + NO_DELETE:
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
                   " FOR EACH STATEMENT EXECUTE FUNCTION compliance_refuse_change()")


def downgrade() -> None:
    for table in ("compliance_rule_cursors", "transaction_reviews", "compliance_reports", "sanctioned_names", "sanctioned_addresses", "kyc_cases", "prices"):
        op.drop_table(table)
    op.execute("DROP FUNCTION compliance_refuse_change()")
