"""helpdesk: tickets, public messages, SLA pauses, internal notes, context links

Revision ID: 0007
Revises: 0002
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0002"
branch_labels = None
depends_on = None


def _uuid(name: str, *args, **kwargs) -> sa.Column:
    return sa.Column(name, postgresql.UUID(as_uuid=True), *args, **kwargs)


def _at(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "tickets",
        _uuid("id", primary_key=True),
        _uuid("customer_id", sa.ForeignKey("users.id"), nullable=False, index=True),
        _uuid("assignee_id", sa.ForeignKey("users.id")),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("category", sa.String(40)),
        sa.Column("priority", sa.String(10), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        _at("first_response_due"),
        _at("resolution_due"),
        _at("paused_since", nullable=True),
        _at("first_responded_at", nullable=True),
        _at("resolved_at", nullable=True),
        _at("closed_at", nullable=True),
        _at("first_response_breached_at", nullable=True),
        _at("resolution_breached_at", nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("state IN ('open', 'in_progress', 'pending_customer', 'resolved', 'closed')",
                           name="state_known"),
        sa.CheckConstraint("priority IN ('low', 'normal', 'high', 'urgent')", name="priority_known"),
    )
    op.create_index("ix_tickets_created_at_id", "tickets", ["created_at", "id"])
    op.create_index("ix_tickets_state", "tickets", ["state"])
    op.create_table(
        "ticket_messages",
        _uuid("id", primary_key=True),
        _uuid("ticket_id", sa.ForeignKey("tickets.id"), nullable=False, index=True),
        _uuid("author_id", sa.ForeignKey("users.id"), nullable=False),
        sa.Column("from_staff", sa.Boolean(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        _at("created_at"),
    )
    op.create_table(
        "ticket_sla_pauses",
        _uuid("id", primary_key=True),
        _uuid("ticket_id", sa.ForeignKey("tickets.id"), nullable=False, index=True),
        _at("started_at"),
        _at("ended_at"),
        sa.CheckConstraint("ended_at >= started_at", name="ordered"),
    )
    op.create_table(
        "ticket_internal_notes",
        _uuid("id", primary_key=True),
        _uuid("ticket_id", sa.ForeignKey("tickets.id"), nullable=False, index=True),
        _uuid("author_id", sa.ForeignKey("users.id"), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        _at("created_at"),
    )
    op.create_table(
        "ticket_context_links",
        _uuid("id", primary_key=True),
        _uuid("ticket_id", sa.ForeignKey("tickets.id"), nullable=False, index=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("ref", sa.String(2048), nullable=False),
        _uuid("created_by", sa.ForeignKey("users.id"), nullable=False),
        _at("created_at"),
        sa.UniqueConstraint("ticket_id", "kind", "ref", name="uq_ticket_context_links_ticket_kind_ref"),
    )


def downgrade() -> None:
    op.drop_table("ticket_context_links")
    op.drop_table("ticket_internal_notes")
    op.drop_table("ticket_sla_pauses")
    op.drop_table("ticket_messages")
    op.drop_index("ix_tickets_state", table_name="tickets")
    op.drop_index("ix_tickets_created_at_id", table_name="tickets")
    op.drop_table("tickets")
