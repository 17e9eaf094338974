"""Role changes by admins, with the two-admin rule for privileged roles.

A change that adds ``operator``, ``compliance`` or ``admin`` is not applied: it becomes a pending
grant of that one role, which another admin confirms. The requester cannot confirm their own
request (403 ``same_admin``), nor can the user it grants the role to (403 ``own_grant``): a
compromised admin session alone can neither make a new admin nor give itself more power. Every
other change (customer, support, and removing any role) is applied at once, as before.

A grant asks for one role and nothing else: the request names the user's current roles plus that
role (else 422 ``privileged_grant_alone``), so the confirming admin approves exactly what they see.

A grant is pending until ``expires_at`` (``VIRTUOZ_ROLE_GRANT_EXPIRY_HOURS`` after the request);
past it, it counts as expired everywhere at once, even before its row says so: it is not listed as
pending, and confirming it records the expiry and answers 409 ``role_grant_expired``. A new request
for the same user and role expires the stale one first. So no sweep job is needed for correctness;
the row catches up the first time anyone touches it.

Audit events (aggregate ``role_grant``): ``role_grant.requested``, ``.confirmed`` and ``.expired``;
the user's own ``user.roles_changed`` names the grant that changed the roles.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.asyncio import Redis
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.db import advisory_lock
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.pagination import keyset_before, next_page
from core.time import rfc3339, utcnow
from identity import service as identity
from identity.grants.models import PRIVILEGED_ROLES, RoleGrant
from identity.grants.states import CONFIRMED, EXPIRED, PENDING, transition
from identity.models import ROLES, User

AGGREGATE = "role_grant"
DEFAULT_EXPIRY_HOURS = 24.0


class SameAdmin(Forbidden):
    code, message = "same_admin", "Another admin must confirm this grant: you requested it."


class OwnGrant(Forbidden):
    code, message = "own_grant", "Another admin must confirm this grant: it gives the role to you."


class GrantNotFound(NotFound):
    code, message = "role_grant_not_found", "No such role grant."


class GrantPending(Conflict):
    code, message = "role_grant_pending", "This role is already waiting for a second admin for this user."


class GrantExpired(Conflict):
    code, message = "role_grant_expired", "This grant expired before a second admin confirmed it: request it again."
    keep_changes = True  # the expiry it found is recorded


class GrantAlone(InvalidInput):
    code = "privileged_grant_alone"
    message = ("A privileged role is granted on its own: send the user's current roles plus that one role, "
               "and change other roles in a request of their own.")


@dataclass(frozen=True)
class RoleChange:
    """What a role request did: the user changed at once, or a grant waiting for a second admin."""

    user: User | None = None
    grant: RoleGrant | None = None


def effective_state(grant: RoleGrant, now: datetime) -> str:
    """The state as it stands now: a pending grant past its deadline is expired, recorded or not."""
    if grant.state == PENDING and grant.expires_at <= now:
        return EXPIRED
    return grant.state


def _snapshot(grant: RoleGrant) -> dict[str, str]:
    return {"user_id": str(grant.user_id), "role": grant.role, "requested_by": str(grant.requested_by),
            "expires_at": rfc3339(grant.expires_at)}


# --- requests -------------------------------------------------------------------------------------

async def change_roles(session: AsyncSession, redis: Redis, actor: uuid.UUID, user_id: uuid.UUID, roles: list[str],
                       *, expiry_hours: float = DEFAULT_EXPIRY_HOURS) -> RoleChange:
    """``POST /admin/users/{id}/role``: apply a change at once, or open the grant of the one
    privileged role it adds."""
    wanted = set(roles)
    unknown = sorted(wanted - set(ROLES))
    if unknown or not wanted:
        raise InvalidInput("Unknown or empty roles.", code="invalid_roles",
                           details={"unknown": unknown, "allowed": list(ROLES)})
    # The roles alone, without a lock and without loading the user: set_roles loads it after its own
    # lock (admin rows first, as every role change does), and a grant adds its role to whatever the
    # user has when it is confirmed.
    held = await session.scalar(select(User.roles).where(User.id == user_id))
    if held is None:
        raise NotFound("No such user.", code="user_not_found")
    current = set(held)
    privileged = (wanted - current) & set(PRIVILEGED_ROLES)
    if not privileged:
        return RoleChange(user=await identity.set_roles(session, redis, actor, user_id, sorted(wanted)))
    if len(privileged) > 1 or wanted != current | privileged:
        raise GrantAlone(details={"current": sorted(current), "requested": sorted(wanted),
                                  "privileged": sorted(privileged)})
    return RoleChange(grant=await request(session, actor, user_id, privileged.pop(), expiry_hours=expiry_hours))


async def request(session: AsyncSession, actor: uuid.UUID, user_id: uuid.UUID, role: str, *,
                  expiry_hours: float = DEFAULT_EXPIRY_HOURS) -> RoleGrant:
    """A pending grant of ``role`` to the user; 409 ``role_grant_pending`` while another one waits."""
    if role not in PRIVILEGED_ROLES:
        raise InvalidInput("Only a privileged role takes a grant.", code="invalid_roles",
                           details={"allowed": list(PRIVILEGED_ROLES)})
    # Two admins asking at once: one creates the grant, the other finds it (the unique index backs this).
    await advisory_lock(session, f"{AGGREGATE}:{user_id}:{role}")
    waiting = await session.scalar(select(RoleGrant).where(
        RoleGrant.user_id == user_id, RoleGrant.role == role, RoleGrant.state == PENDING).with_for_update())
    now = utcnow()
    if waiting is not None:
        if effective_state(waiting, now) == PENDING:
            raise GrantPending(details={"grant_id": str(waiting.id), "requested_by": str(waiting.requested_by)})
        await _expire(session, waiting)
    grant = RoleGrant(id=uuid.uuid4(), user_id=user_id, role=role, state=PENDING, requested_by=actor,
                      expires_at=now + timedelta(hours=expiry_hours))
    session.add(grant)
    await session.flush()
    await audit.append(session, AGGREGATE, grant.id, "role_grant.requested", _snapshot(grant), actor=actor)
    return grant


# --- confirmation and expiry ----------------------------------------------------------------------

async def _expire(session: AsyncSession, grant: RoleGrant) -> None:
    grant.state = transition(grant.state, "expire")
    await session.flush()
    # No actor: the deadline expired it; whoever touched it only noticed.
    await audit.append(session, AGGREGATE, grant.id, "role_grant.expired", {"expires_at": rfc3339(grant.expires_at)})


async def confirm(session: AsyncSession, redis: Redis, actor: uuid.UUID, grant_id: uuid.UUID) -> RoleGrant:
    """The second admin's confirmation: the user gets the role now. 403 ``same_admin`` for the
    requester, ``own_grant`` for the grantee; 409 ``invalid_state`` once confirmed (or expired),
    ``role_grant_expired`` when its deadline passed while it waited."""
    grant = await session.scalar(select(RoleGrant).where(RoleGrant.id == grant_id).with_for_update())
    if grant is None:
        raise GrantNotFound()
    if effective_state(grant, utcnow()) == EXPIRED and grant.state == PENDING:
        await _expire(session, grant)
        raise GrantExpired(details={"expires_at": rfc3339(grant.expires_at)})
    confirmed = transition(grant.state, "confirm")  # 409 for anything but pending, before anyone is judged
    if actor == grant.requested_by:
        raise SameAdmin(details={"requested_by": str(grant.requested_by)})
    if actor == grant.user_id:
        raise OwnGrant()
    grant.state, grant.confirmed_by, grant.confirmed_at = confirmed, actor, utcnow()
    await session.flush()
    await audit.append(session, AGGREGATE, grant.id, "role_grant.confirmed",
                       {"user_id": str(grant.user_id), "role": grant.role, "confirmed_by": str(actor)}, actor=actor)
    await identity.add_role(session, redis, actor, grant.user_id, grant.role, grant_id=grant.id)
    return grant


# --- reads ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GrantPage:
    items: list[RoleGrant]
    next_cursor: str | None


async def list_grants(session: AsyncSession, *, state: str = PENDING, user_id: uuid.UUID | None = None,
                      limit: int = 50, cursor: str | None = None) -> GrantPage:
    """Newest first, by effective state: ``pending`` lists only grants still in time to be confirmed,
    ``expired`` also those whose deadline passed unrecorded."""
    now = utcnow()
    query = select(RoleGrant).order_by(RoleGrant.created_at.desc(), RoleGrant.id.desc()).limit(limit + 1)
    if state == PENDING:
        query = query.where(RoleGrant.state == PENDING, RoleGrant.expires_at > now)
    elif state == EXPIRED:
        query = query.where(or_(RoleGrant.state == EXPIRED,
                                and_(RoleGrant.state == PENDING, RoleGrant.expires_at <= now)))
    else:
        query = query.where(RoleGrant.state == CONFIRMED)
    if user_id is not None:
        query = query.where(RoleGrant.user_id == user_id)
    if cursor:
        query = query.where(keyset_before(cursor, RoleGrant.created_at, RoleGrant.id))
    return GrantPage(*next_page(list(await session.scalars(query)), limit))
