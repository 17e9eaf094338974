"""role grants (two admins for a privileged role); the Travel Rule counterparty's pinned certificate

Revision ID: 0022
Revises: 0002
Create Date: 2026-12-10
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0022"
down_revision = "0002"  # users
branch_labels = None
depends_on = ("0012",)  # travel_rule_transfers gains its counterparty's certificate fingerprint

UUID = postgresql.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)
NOW = sa.func.now()


def upgrade() -> None:
    op.create_table(
        "role_grants",
        sa.Column("id", UUID, nullable=False),
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("requested_by", UUID, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("confirmed_by", UUID, nullable=True),
        sa.Column("confirmed_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("id", name="pk_role_grants"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_role_grants_user_id_users"),
        sa.ForeignKeyConstraint(["requested_by"], ["users.id"], name="fk_role_grants_requested_by_users"),
        sa.ForeignKeyConstraint(["confirmed_by"], ["users.id"], name="fk_role_grants_confirmed_by_users"),
        sa.CheckConstraint("state IN ('pending', 'confirmed', 'expired')", name="ck_role_grants_state_known"),
        sa.CheckConstraint("role IN ('operator', 'compliance', 'admin')", name="ck_role_grants_role_privileged"),
        sa.CheckConstraint("(state = 'confirmed') = (confirmed_by IS NOT NULL AND confirmed_at IS NOT NULL)",
                           name="ck_role_grants_confirmed_has_confirmer"),
        # Separation of duties in the database too: two different people, neither of them the grantee.
        sa.CheckConstraint("confirmed_by IS NULL OR (confirmed_by <> requested_by AND confirmed_by <> user_id)",
                           name="ck_role_grants_confirmed_by_another"),
    )
    op.create_index("uq_role_grants_pending", "role_grants", ["user_id", "role"], unique=True,
                    postgresql_where=sa.text("state = 'pending'"))
    op.create_index("ix_role_grants_state_created", "role_grants", ["state", "created_at", "id"])
    op.create_index("ix_role_grants_user_created", "role_grants", ["user_id", "created_at"])
    # What a TRP callback (or confirmation) must present: the SHA-256 of the certificate the
    # counterparty presented when the inquiry went to it (or came from it). NULL: nothing pinned yet.
    op.add_column("travel_rule_transfers", sa.Column("counterparty_fingerprint", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("travel_rule_transfers", "counterparty_fingerprint")
    op.drop_table("role_grants")
