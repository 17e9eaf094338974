"""scanner_cursors: the chain's finality rule and the finalized height the scanner verified

Revision ID: 0024
Revises: 0009
Create Date: 2026-12-08

On a chain whose finality is ``finalized`` (ChainSettings), a deposit is credited only once its
block is at or below the node's ``finalized`` block. The scanner writes the rule it follows and the
finalized height it checked against its own blocks with every cursor move; the worker that credits
reads them back, so a credit request sent too early, or sent again, cannot credit a block that is
not final yet.
"""
import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0009"  # scanner_cursors
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("scanner_cursors", sa.Column("finality", sa.String(13), nullable=False,
                                               server_default=sa.text("'confirmations'")))
    op.add_column("scanner_cursors", sa.Column("finalized", sa.BigInteger(), nullable=True))
    op.create_check_constraint("ck_scanner_cursors_finality_known", "scanner_cursors",
                               "finality IN ('confirmations', 'finalized')")


def downgrade() -> None:
    op.drop_constraint("ck_scanner_cursors_finality_known", "scanner_cursors", type_="check")
    op.drop_column("scanner_cursors", "finalized")
    op.drop_column("scanner_cursors", "finality")
