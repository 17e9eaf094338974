"""proof of reserves: epochs, per-asset Merkle sum trees, customer nonces, on-chain holdings

Revision ID: 0029
Revises: 0003
Create Date: 2026-12-06

A published epoch is evidence: its rows refuse UPDATE, DELETE and TRUNCATE (a trigger), as the
ledger's transfers do; a correction is a new epoch.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0029"
down_revision = "0003"  # the ledger: the trees cover its customer accounts, in its currencies
branch_labels = None
depends_on = None

MONEY = sa.Numeric(78, 0)
UUID = postgresql.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)
TABLES = ("reserve_epochs", "reserve_assets", "reserve_nodes", "reserve_nonces", "reserve_blocks", "reserve_holdings")


def _epoch_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["epoch_id"], ["reserve_epochs.id"], name=f"fk_{table}_epoch_id_reserve_epochs")


def upgrade() -> None:
    op.create_table(
        "reserve_epochs",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("slot", sa.String(40)),
        sa.Column("requested_by", sa.String(120), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_reserve_epochs"),
        sa.UniqueConstraint("slot", name="uq_reserve_epochs_slot"),
    )
    # "latest": the newest snapshot.
    op.create_index("ix_reserve_epochs_created", "reserve_epochs", ["created_at", "id"])
    op.create_table(
        "reserve_assets",
        sa.Column("epoch_id", sa.BigInteger(), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("root_sum", MONEY, nullable=False),
        sa.Column("liabilities", MONEY, nullable=False),
        sa.Column("reserves", MONEY, nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("blocks", postgresql.JSONB(), nullable=False),
        sa.PrimaryKeyConstraint("epoch_id", "asset", name="pk_reserve_assets"),
        _epoch_fk("reserve_assets"),
        sa.ForeignKeyConstraint(["asset"], ["currencies.code"], name="fk_reserve_assets_asset_currencies"),
        sa.CheckConstraint("root_sum = liabilities", name="ck_reserve_assets_root_covers_liabilities"),
        sa.CheckConstraint("liabilities >= 0 AND reserves >= 0", name="ck_reserve_assets_not_negative"),
    )
    op.create_table(
        "reserve_nodes",
        sa.Column("epoch_id", sa.BigInteger(), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("sum", MONEY, nullable=False),
        sa.Column("leaf_id", sa.String(64)),
        sa.Column("user_id", UUID),
        sa.PrimaryKeyConstraint("epoch_id", "asset", "level", "position", name="pk_reserve_nodes"),
        _epoch_fk("reserve_nodes"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_reserve_nodes_user_id_users"),
        # A negative balance never enters a tree (the builder refuses first; this refuses always).
        sa.CheckConstraint("sum >= 0", name="ck_reserve_nodes_sum_not_negative"),
        sa.CheckConstraint("(level = 0) = (leaf_id IS NOT NULL)", name="ck_reserve_nodes_leaf_has_id"),
        sa.CheckConstraint("user_id IS NULL OR level = 0", name="ck_reserve_nodes_customer_is_leaf"),
    )
    op.create_index("uq_reserve_nodes_customer", "reserve_nodes", ["epoch_id", "asset", "user_id"], unique=True,
                    postgresql_where=sa.text("user_id IS NOT NULL"))
    op.create_table(
        "reserve_nonces",
        sa.Column("epoch_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("epoch_id", "user_id", name="pk_reserve_nonces"),
        _epoch_fk("reserve_nonces"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_reserve_nonces_user_id_users"),
    )
    op.create_table(
        "reserve_blocks",
        sa.Column("epoch_id", sa.BigInteger(), nullable=False),
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(66), nullable=False),
        sa.PrimaryKeyConstraint("epoch_id", "chain", name="pk_reserve_blocks"),
        _epoch_fk("reserve_blocks"),
    )
    op.create_table(
        "reserve_holdings",
        sa.Column("epoch_id", sa.BigInteger(), nullable=False),
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("asset", sa.String(10), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.PrimaryKeyConstraint("epoch_id", "chain", "address", "asset", name="pk_reserve_holdings"),
        _epoch_fk("reserve_holdings"),
        sa.CheckConstraint("amount >= 0", name="ck_reserve_holdings_amount_not_negative"),
    )

    op.execute(
        """
        CREATE FUNCTION reserves_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is a published proof of reserves: % refused', TG_TABLE_NAME, TG_OP;
        END $$
        """
    )
    for table in TABLES:
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
                   " FOR EACH ROW EXECUTE FUNCTION reserves_append_only()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
                   " FOR EACH STATEMENT EXECUTE FUNCTION reserves_append_only()")


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
    op.execute("DROP FUNCTION reserves_append_only()")
