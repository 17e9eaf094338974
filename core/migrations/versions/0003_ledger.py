"""the double-entry ledger: currencies (seeded), accounts, transfers, postings, holds

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(78, 0)
UUID = postgresql.UUID(as_uuid=True)
NOW = sa.func.now()

CURRENCIES = [
    {"code": "USD", "decimals": 2, "kind": "fiat", "chains": []},
    {"code": "ETH", "decimals": 18, "kind": "native", "chains": ["ethereum"]},
    {"code": "POL", "decimals": 18, "kind": "native", "chains": ["polygon"]},
    {"code": "USDC", "decimals": 6, "kind": "token", "chains": ["ethereum", "polygon"]},
]


def upgrade() -> None:
    currencies = op.create_table(
        "currencies",
        sa.Column("code", sa.String(10), nullable=False),
        sa.Column("decimals", sa.SmallInteger(), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("chains", postgresql.ARRAY(sa.String(40)), nullable=False, server_default=sa.text("'{}'")),
        sa.PrimaryKeyConstraint("code", name="pk_currencies"),
        sa.CheckConstraint("kind IN ('fiat', 'native', 'token')", name="ck_currencies_kind_known"),
        sa.CheckConstraint("decimals BETWEEN 0 AND 36", name="ck_currencies_decimals_range"),
    )
    op.bulk_insert(currencies, CURRENCIES)

    op.create_table(
        "ledger_accounts",
        sa.Column("id", UUID, nullable=False),
        sa.Column("currency", sa.String(10), nullable=False),
        sa.Column("owner_type", sa.String(10), nullable=False),
        sa.Column("user_id", UUID),
        sa.Column("kind", sa.String(60), nullable=False),
        sa.Column("balance", MONEY, nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_accounts"),
        sa.ForeignKeyConstraint(["currency"], ["currencies.code"], name="fk_ledger_accounts_currency_currencies"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_ledger_accounts_user_id_users"),
        sa.UniqueConstraint("id", "currency", name="uq_ledger_accounts_id_currency"),
        sa.CheckConstraint("owner_type IN ('user', 'system')", name="ck_ledger_accounts_owner_type_known"),
        sa.CheckConstraint("(owner_type = 'user') = (user_id IS NOT NULL)", name="ck_ledger_accounts_owner_consistent"),
        sa.CheckConstraint("owner_type <> 'user' OR kind IN ('available', 'held')",
                           name="ck_ledger_accounts_user_kind_known"),
        # The last line of defence: the service refuses first (InsufficientFunds), this refuses always.
        sa.CheckConstraint("owner_type <> 'user' OR balance >= 0", name="ck_ledger_accounts_user_balance_not_negative"),
    )
    # One account per (user, currency, kind) and per (system name, currency). Two partial indexes
    # rather than one with NULLs: a NULL user_id would make every system account "distinct".
    op.create_index("uq_ledger_accounts_user", "ledger_accounts", ["user_id", "currency", "kind"], unique=True,
                    postgresql_where=sa.text("owner_type = 'user'"))
    op.create_index("uq_ledger_accounts_system", "ledger_accounts", ["kind", "currency"], unique=True,
                    postgresql_where=sa.text("owner_type = 'system'"))

    op.create_table(
        "ledger_transfers",
        sa.Column("id", UUID, nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("reference_kind", sa.String(40)),
        sa.Column("reference_id", sa.String(100)),
        sa.Column("tx_hash", sa.String(100)),
        sa.Column("hold_id", UUID),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_transfers"),
        sa.UniqueConstraint("reference", name="uq_ledger_transfers_reference"),
    )
    op.create_index("ix_ledger_transfers_reference_object", "ledger_transfers", ["reference_kind", "reference_id"])
    op.create_index("uq_ledger_transfers_hold_resolution", "ledger_transfers", ["hold_id"], unique=True,
                    postgresql_where=sa.text("hold_id IS NOT NULL AND hold_id <> id"))

    op.create_table(
        "ledger_postings",
        sa.Column("id", UUID, nullable=False),
        sa.Column("transfer_id", UUID, nullable=False),
        sa.Column("account_id", UUID, nullable=False),
        sa.Column("currency", sa.String(10), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_postings"),
        sa.ForeignKeyConstraint(["transfer_id"], ["ledger_transfers.id"],
                                name="fk_ledger_postings_transfer_id_ledger_transfers"),
        sa.ForeignKeyConstraint(["account_id", "currency"], ["ledger_accounts.id", "ledger_accounts.currency"],
                                name="fk_ledger_postings_account_currency"),
        sa.UniqueConstraint("transfer_id", "account_id", name="uq_ledger_postings_transfer_account"),
        sa.CheckConstraint("amount <> 0", name="ck_ledger_postings_amount_not_zero"),
    )
    op.create_index("ix_ledger_postings_account_created", "ledger_postings", ["account_id", "created_at", "id"])

    op.create_table(
        "ledger_holds",
        sa.Column("id", UUID, nullable=False),
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("currency", sa.String(10), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("state", sa.String(10), nullable=False, server_default=sa.text("'pending'")),
        sa.Column("posted_amount", MONEY),
        sa.Column("fee", MONEY),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_holds"),
        sa.ForeignKeyConstraint(["id"], ["ledger_transfers.id"], name="fk_ledger_holds_id_ledger_transfers"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_ledger_holds_user_id_users"),
        sa.ForeignKeyConstraint(["currency"], ["currencies.code"], name="fk_ledger_holds_currency_currencies"),
        sa.CheckConstraint("amount > 0", name="ck_ledger_holds_amount_positive"),
        sa.CheckConstraint("state IN ('pending', 'posted', 'voided')", name="ck_ledger_holds_state_known"),
        sa.CheckConstraint("(state = 'pending') = (resolved_at IS NULL)", name="ck_ledger_holds_resolved_when_not_pending"),
        sa.CheckConstraint("state <> 'posted' OR (posted_amount > 0 AND fee >= 0 AND posted_amount + fee <= amount)",
                           name="ck_ledger_holds_posted_within_amount"),
    )
    op.create_index("ix_ledger_holds_user_state", "ledger_holds", ["user_id", "state"])
    # Deferred: a hold's creating transfer names the hold, and the hold row is the transfer's id.
    op.create_foreign_key("fk_ledger_transfers_hold_id_ledger_holds", "ledger_transfers", "ledger_holds",
                          ["hold_id"], ["id"], deferrable=True, initially="DEFERRED")

    # History is evidence: transfers and postings are never updated or deleted; a correction is
    # a new transfer.
    op.execute(
        """
        CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
        END $$
        """
    )
    for table in ("ledger_transfers", "ledger_postings"):
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
                   " FOR EACH ROW EXECUTE FUNCTION ledger_append_only()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
                   " FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()")

    # Double entry, enforced by the database at commit: whatever code wrote the postings, a
    # transaction whose transfer does not sum to zero per currency cannot commit.
    op.execute(
        """
        CREATE FUNCTION ledger_transfer_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            unbalanced text;
        BEGIN
            SELECT currency INTO unbalanced FROM ledger_postings WHERE transfer_id = NEW.transfer_id
                GROUP BY currency HAVING sum(amount) <> 0 LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'ledger transfer % does not balance in %', NEW.transfer_id, unbalanced
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE CONSTRAINT TRIGGER ledger_postings_balanced AFTER INSERT ON ledger_postings"
        " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transfer_balanced()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER ledger_postings_balanced ON ledger_postings")
    op.execute("DROP FUNCTION ledger_transfer_balanced()")
    op.drop_constraint("fk_ledger_transfers_hold_id_ledger_holds", "ledger_transfers", type_="foreignkey")
    op.drop_table("ledger_holds")
    op.drop_table("ledger_postings")
    op.drop_table("ledger_transfers")
    op.execute("DROP FUNCTION ledger_append_only()")
    op.drop_table("ledger_accounts")
    op.drop_table("currencies")
