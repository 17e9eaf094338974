"""scheduled_runs: one row per scheduled entry and period

Revision ID: 0034
Revises: 0001
Create Date: 2026-12-18

The scheduler runs replicated, one leading at a time (jobs.leadership); the leader writes
``(job, period)`` before it sends an entry's messages, so a period is fired at most once, across a
failover too.
"""
import sqlalchemy as sa
from alembic import op

revision = "0034"
down_revision = "0001"  # beside the service heartbeats, the other table of the processes themselves
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduled_runs",
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("period", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("fired_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("job", "period", name="pk_scheduled_runs"),
    )


def downgrade() -> None:
    op.drop_table("scheduled_runs")
