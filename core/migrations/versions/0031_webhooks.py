"""webhooks: integrators' endpoints, the outbox of events, one delivery per (event, endpoint)

Revision ID: 0031
Revises: 0002
Create Date: 2026-12-14

The event and its deliveries are written in the transaction of the change they announce: the
webhooks worker delivers from these rows, so a lost queue message only delays a delivery.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0031"
down_revision = "0002"  # users: an endpoint belongs to one
branch_labels = None
depends_on = None

UUID = postgresql.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", UUID, nullable=False),
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("events", postgresql.ARRAY(sa.String(80)), nullable=False),
        sa.Column("description", sa.String(500)),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("previous_secret_sealed", sa.LargeBinary()),
        sa.Column("previous_secret_expires_at", TS),
        sa.Column("failing_since", TS),
        sa.Column("disabled_reason", sa.String(40)),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_endpoints"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_webhook_endpoints_user_id_users"),
    )
    op.create_index("ix_webhook_endpoints_user", "webhook_endpoints", ["user_id"])
    op.create_table(
        "webhook_events",
        sa.Column("id", UUID, nullable=False),
        sa.Column("type", sa.String(80), nullable=False),
        sa.Column("resource_type", sa.String(40), nullable=False),
        sa.Column("resource_id", sa.String(80), nullable=False),
        sa.Column("data", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_events"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", UUID, nullable=False),
        sa.Column("position", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("event_id", UUID, nullable=False),
        sa.Column("endpoint_id", UUID, nullable=False),
        sa.Column("resource_type", sa.String(40), nullable=False),
        sa.Column("resource_id", sa.String(80), nullable=False),
        sa.Column("state", sa.String(12), nullable=False, server_default=sa.text("'pending'")),
        sa.Column("attempts", sa.SmallInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_attempt_at", TS),
        sa.Column("last_status_code", sa.SmallInteger()),
        sa.Column("last_latency_ms", sa.Integer()),
        sa.Column("last_error", sa.String(300)),
        sa.Column("response_excerpt", sa.String(1024)),
        sa.Column("finished_at", TS),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(["event_id"], ["webhook_events.id"],
                                name="fk_webhook_deliveries_event_id_webhook_events"),
        # Deleting an endpoint deletes its deliveries; the events stay (other endpoints may have them).
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoints.id"], ondelete="CASCADE",
                                name="fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
        sa.UniqueConstraint("position", name="uq_webhook_deliveries_position"),
        sa.CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="ck_webhook_deliveries_state_known"),
    )
    # The worker's two questions: what is due, and what is the earliest pending delivery of a resource.
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["next_attempt_at"],
                    postgresql_where=sa.text("state = 'pending'"))
    op.create_index("ix_webhook_deliveries_order", "webhook_deliveries",
                    ["endpoint_id", "resource_type", "resource_id", "position"],
                    postgresql_where=sa.text("state = 'pending'"))
    # An endpoint's deliveries, newest first (GET /webhooks/{id}/deliveries).
    op.create_index("ix_webhook_deliveries_endpoint_created", "webhook_deliveries", ["endpoint_id", "created_at"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_events")
    op.drop_table("webhook_endpoints")
