"""withdrawals: the awaiting_travel_rule state (a withdrawal waits for its Travel Rule transfer's acceptance)

Revision ID: 0013
Revises: 0010
Create Date: 2026-11-27
"""
from alembic import op

revision = "0013"
down_revision = "0010"
branch_labels = None
depends_on = None

BEFORE = ("requested", "pending_approval", "approved", "signing", "signed", "broadcast", "confirmed", "failed",
          "rolled_back")
AFTER = ("requested", "awaiting_travel_rule", "pending_approval", "approved", "signing", "signed", "broadcast",
         "confirmed", "failed", "rolled_back")


def _check(states: tuple[str, ...]) -> None:
    op.drop_constraint("ck_withdrawals_state_known", "withdrawals", type_="check")
    op.create_check_constraint("ck_withdrawals_state_known", "withdrawals",
                               "state IN (" + ", ".join(f"'{state}'" for state in states) + ")")


def upgrade() -> None:
    _check(AFTER)


def downgrade() -> None:
    _check(BEFORE)
