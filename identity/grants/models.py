"""The role grant table (migration 0022): one row per request for a privileged role.

The row is the current state; every change is an audit event (aggregate ``role_grant``). The
database itself refuses a grant confirmed by its requester or by the user it grants the role to,
and a second pending grant of one role to one user. Nothing is deleted.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, TimestampMixin
from identity.grants.states import PENDING, STATES

# The roles that take two admins to grant: they move money, decide on customers or grant roles.
PRIVILEGED_ROLES = ("operator", "compliance", "admin")


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


class RoleGrant(IdMixin, TimestampMixin, Base):
    __tablename__ = "role_grants"
    __table_args__ = (
        CheckConstraint(f"state IN ({_listed(STATES)})", name="state_known"),
        CheckConstraint(f"role IN ({_listed(PRIVILEGED_ROLES)})", name="role_privileged"),
        CheckConstraint("(state = 'confirmed') = (confirmed_by IS NOT NULL AND confirmed_at IS NOT NULL)",
                        name="confirmed_has_confirmer"),
        # Separation of duties, whatever the code above does: two different people, neither the grantee.
        CheckConstraint("confirmed_by IS NULL OR (confirmed_by <> requested_by AND confirmed_by <> user_id)",
                        name="confirmed_by_another"),
        Index("uq_role_grants_pending", "user_id", "role", unique=True, postgresql_where=text(f"state = '{PENDING}'")),
        Index("ix_role_grants_state_created", "state", "created_at", "id"),
        Index("ix_role_grants_user_created", "user_id", "created_at"),
    )
    __mapper_args__ = {"eager_defaults": True}  # created_at comes back with the INSERT (async: no lazy loads)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    role: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(10))
    requested_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    # Past this moment a pending grant can no longer be confirmed (VIRTUOZ_ROLE_GRANT_EXPIRY_HOURS).
    expires_at: Mapped[datetime]
    confirmed_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    confirmed_at: Mapped[datetime | None]
