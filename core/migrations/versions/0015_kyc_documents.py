"""KYC documents: the files a user sends with a KYC submission (metadata here, bytes in the file store)

Revision ID: 0015
Revises: 0011
Create Date: 2026-11-28
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0011"  # kyc_cases, and the compliance_refuse_change() trigger function
branch_labels = None
depends_on = None

UUID = postgresql.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "kyc_documents",
        sa.Column("id", UUID, nullable=False),
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("filename", sa.String(120), nullable=False),
        sa.Column("content_type", sa.String(60), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("submitted_at", TS, nullable=False),  # the submission it came with (the case's submitted_at)
        sa.Column("position", sa.SmallInteger, nullable=False),  # its place in that submission's form
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_kyc_documents"),
        sa.ForeignKeyConstraint(["user_id"], ["kyc_cases.user_id"], name="fk_kyc_documents_user_id_kyc_cases"),
        sa.CheckConstraint("size >= 0", name="ck_kyc_documents_size_not_negative"),
    )
    op.create_index("ix_kyc_documents_user_submission", "kyc_documents", ["user_id", "submitted_at", "position"])
    # A document is evidence of what the user sent: never changed, never removed.
    op.execute("CREATE TRIGGER kyc_documents_append_only BEFORE UPDATE OR DELETE ON kyc_documents"
               " FOR EACH ROW EXECUTE FUNCTION compliance_refuse_change()")
    op.execute("CREATE TRIGGER kyc_documents_no_truncate BEFORE TRUNCATE ON kyc_documents"
               " FOR EACH STATEMENT EXECUTE FUNCTION compliance_refuse_change()")


def downgrade() -> None:
    op.drop_table("kyc_documents")
