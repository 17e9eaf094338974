"""Identity: registration, login, sessions and refresh-token families, TOTP MFA, roles and status.

Every change appends its audit event in the caller's transaction (``core.audit.append``);
events never carry passwords, tokens, TOTP secrets or recovery codes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from redis.asyncio import Redis
from sqlalchemy import any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core import audit
from core.control import invalidate_rbac
from core.crypto import token_digest
from core.db import after_commit
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from core.locales import normalize as normalize_locale
from core.pagination import keyset_before, next_page
from core.settings import Settings
from core.time import utcnow
from identity import mfa, passwords, throttle
from identity.models import LOCK_USER, ROLES, AuthSession, RecoveryCode, RefreshToken, User
from identity.tokens import issue_access_token, new_refresh_token


class InvalidCredentials(Unauthorized):
    code, message = "invalid_credentials", "The email or password is wrong."
    keep_changes = True  # the failed-login audit event is kept


class MfaRequired(Unauthorized):
    code, message = "mfa_required", "This account has two-factor authentication: send a current TOTP code."


class InvalidMfaCode(Unauthorized):
    code, message = "invalid_mfa_code", "The two-factor code is wrong, expired or already used."
    keep_changes = True


class AccountSuspended(Forbidden):
    code, message = "account_suspended", "This account is suspended."


class InvalidRefreshToken(Unauthorized):
    code, message = "invalid_refresh_token", "The refresh token is invalid, expired or revoked."


class RefreshTokenReused(Unauthorized):
    code, message = "refresh_token_reused", "This refresh token was already used: the session has been revoked."
    keep_changes = True  # the revocation and its audit event must stand


class SessionExpired(Unauthorized):
    code, message = "session_expired", "This session has reached its maximum lifetime; log in again."
    keep_changes = True  # the session's end and its audit event must stand


def normalize_email(email: str) -> str:
    return email.strip().lower()


@dataclass(frozen=True)
class IssuedTokens:
    user: User
    session_id: uuid.UUID
    access_token: str
    refresh_token: str


# --- accounts ---------------------------------------------------------------------------------

async def register(session: AsyncSession, email: str, password: str, display_name: str,
                   roles: list[str] | None = None, locale: str | None = None, via: str | None = None) -> User:
    """A new account; ``via`` names who made it when it is not the user signing up (``cli``)."""
    email = normalize_email(email)
    passwords.check_policy(password, email)
    user_id = uuid.uuid4()
    inserted = await session.scalar(
        insert(User)
        .values(id=user_id, email=email, display_name=display_name.strip(),
                password_hash=await passwords.hash_password(password), roles=roles or ["customer"],
                locale=normalize_locale(locale) if locale else None)
        .on_conflict_do_nothing(index_elements=[User.email])
        .returning(User.id)
    )
    if inserted is None:
        raise Conflict("An account with this email exists.", code="email_taken")
    user = await session.get_one(User, user_id)
    await audit.append(session, "user", user.id, "user.registered",
                       {"email": email, "roles": user.roles, **({"via": via} if via else {})}, actor=via or user.id)
    return user


async def update_profile(session: AsyncSession, user_id: uuid.UUID, changes: dict[str, str]) -> User:
    """The user's own display name and locale; an audit event names what changed (no event if nothing did)."""
    user = await session.get_one(User, user_id, with_for_update=LOCK_USER)
    if "locale" in changes:
        changes = {**changes, "locale": normalize_locale(changes["locale"])}
    changed = {name: value for name, value in changes.items() if getattr(user, name) != value}
    for name, value in changed.items():
        setattr(user, name, value)
    if changed:
        await session.flush()
        await audit.append(session, "user", user.id, "user.profile_updated", changed, actor=user.id)
    return user


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.", code="user_not_found")
    return user


# --- sessions ---------------------------------------------------------------------------------

async def _open_session(session: AsyncSession, settings: Settings, user: User, ip: str | None,
                        user_agent: str | None) -> IssuedTokens:
    auth_session = AuthSession(id=uuid.uuid4(), user_id=user.id, ip=ip, user_agent=(user_agent or "")[:300])
    session.add(auth_session)
    refresh = new_refresh_token()
    session.add(RefreshToken(id=uuid.uuid4(), session_id=auth_session.id, token_hash=token_digest(refresh)))
    await session.flush()
    await audit.append(session, "user", user.id, "user.logged_in", {"session_id": str(auth_session.id), "ip": ip},
                       actor=user.id)
    access = issue_access_token(settings, user.id, auth_session.id, user.roles)
    return IssuedTokens(user, auth_session.id, access, refresh)


async def login(session: AsyncSession, redis: Redis, settings: Settings, *, email: str, password: str,
                totp_code: str | None, ip: str, user_agent: str | None) -> IssuedTokens:
    email = normalize_email(email)
    # Counted before the password is verified: a burst of guesses cannot all pass one check.
    attempt = await throttle.reserve_login(redis, settings, email, ip)
    user = await session.scalar(select(User).where(User.email == email).with_for_update(**LOCK_USER))
    # Unknown emails verify against a dummy hash: same work, same answer, no enumeration.
    password_ok = await passwords.verify_password(user.password_hash if user else passwords.dummy_hash(), password)
    if user is None or not password_ok:
        if user is not None:
            await audit.append(session, "user", user.id, "user.login_failed", {"reason": "password", "ip": ip})
        raise InvalidCredentials()  # the attempt stays counted
    if user.status != "active":
        await throttle.give_back(redis, attempt)
        raise AccountSuspended()
    if user.mfa_enabled:
        if not totp_code:
            await throttle.give_back(redis, attempt)
            raise MfaRequired()
        # A lost authenticator is what recovery codes are for: each one also opens one session.
        if not await _consume_recovery_code(session, user, totp_code):
            await _consume_totp(session, settings, user, totp_code, ip=ip)  # a wrong code stays counted
    await throttle.login_succeeded(redis, attempt)
    return await _open_session(session, settings, user, ip, user_agent)


async def refresh(session: AsyncSession, settings: Settings, token: str) -> IssuedTokens:
    row = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == token_digest(token)).with_for_update()
    )
    if row is None:
        raise InvalidRefreshToken()
    auth_session = await session.get_one(AuthSession, row.session_id, with_for_update=True)
    if auth_session.revoked_at is not None:
        raise InvalidRefreshToken()
    if row.used_at is not None:
        # A rotated token came back: someone holds a copy. Revoke the whole family (OAuth 2.1 §4.3.1).
        await _revoke(session, auth_session, "refresh_reuse")
        await audit.append(session, "user", auth_session.user_id, "session.refresh_reused",
                           {"session_id": str(auth_session.id)})
        raise RefreshTokenReused()
    now = utcnow()
    if auth_session.created_at + timedelta(hours=settings.session_max_age_hours) < now:
        # However often it was refreshed: a stolen refresh token cannot be kept alive for ever.
        await _revoke(session, auth_session, "expired")
        await audit.append(session, "user", auth_session.user_id, "session.expired",
                           {"session_id": str(auth_session.id), "max_age_hours": settings.session_max_age_hours})
        raise SessionExpired()
    if row.created_at + timedelta(seconds=settings.refresh_token_ttl_seconds) < now:
        raise InvalidRefreshToken()
    user = await session.get_one(User, auth_session.user_id)
    if user.status != "active":
        raise AccountSuspended()
    row.used_at = now
    auth_session.last_seen_at = now
    new_token = new_refresh_token()
    session.add(RefreshToken(id=uuid.uuid4(), session_id=auth_session.id, token_hash=token_digest(new_token)))
    await session.flush()
    access = issue_access_token(settings, user.id, auth_session.id, user.roles)
    return IssuedTokens(user, auth_session.id, access, new_token)


async def _revoke(session: AsyncSession, auth_session: AuthSession, reason: str) -> None:
    if auth_session.revoked_at is None:
        auth_session.revoked_at = utcnow()
        auth_session.revoked_reason = reason


async def logout(session: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID) -> None:
    await revoke_session(session, user_id, session_id, reason="logout")


async def logout_all(session: AsyncSession, user_id: uuid.UUID, *, reason: str = "logout_all",
                     actor: uuid.UUID | None = None) -> int:
    revoked = await session.scalars(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
        .returning(AuthSession.id)
    )
    ids = [str(sid) for sid in revoked]
    await audit.append(session, "user", user_id, "session.revoked_all", {"sessions": ids, "reason": reason},
                       actor=actor or user_id)
    return len(ids)


async def revoke_session(session: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID, *,
                         reason: str = "revoked") -> None:
    auth_session = await session.get(AuthSession, session_id, with_for_update=True)
    if auth_session is None or auth_session.user_id != user_id:
        raise NotFound("No such session.", code="session_not_found")
    await _revoke(session, auth_session, reason)
    await audit.append(session, "user", user_id, "session.revoked", {"session_id": str(session_id), "reason": reason},
                       actor=user_id)


async def active_sessions(session: AsyncSession, user_id: uuid.UUID) -> list[AuthSession]:
    result = await session.scalars(
        select(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .order_by(AuthSession.created_at.desc())
    )
    return list(result)


_SESSIONS = AuthSession.__table__.c
_USERS = User.__table__.c
# The reads of authenticated requests (api.principal) as Core statements on the tables, built once:
# no ORM compilation or result handling, on a session or straight on a connection.
_SESSION_ACCESS = (
    select(_USERS.roles, _USERS.status)
    .join_from(AuthSession.__table__, User.__table__, _USERS.id == _SESSIONS.user_id)
    .where(_SESSIONS.id == bindparam("session_id"), _SESSIONS.user_id == bindparam("user_id"),
           _SESSIONS.revoked_at.is_(None))
)
_USER_ACCESS = select(_USERS.roles, _USERS.status).where(_USERS.id == bindparam("user_id"))


async def session_access(db: AsyncSession | AsyncConnection, session_id: uuid.UUID,
                         user_id: uuid.UUID) -> tuple[list[str], str] | None:
    """(roles, status) of ``user_id`` while ``session_id`` is a live session *of* theirs, else None: a
    token's ``sid`` proves nothing about its ``sub`` unless the two are looked up together. The
    session check and the RBAC lookup in one round trip."""
    row = (await db.execute(_SESSION_ACCESS, {"session_id": session_id, "user_id": user_id})).first()
    return (list(row.roles), row.status) if row else None


async def session_in_force(session: AsyncSession, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Whether a long-lived connection (the SSE stream) may go on: its session is live and its user active."""
    row = (await session.execute(
        select(AuthSession.revoked_at, User.status)
        .join(User, User.id == AuthSession.user_id)
        .where(AuthSession.id == session_id, AuthSession.user_id == user_id)
    )).first()
    return row is not None and row.revoked_at is None and row.status == "active"


# --- MFA --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Enrollment:
    secret: str
    otpauth_uri: str
    recovery_codes: list[str]


async def _confirm_step_up(session: AsyncSession, settings: Settings, redis: Redis, user_id: uuid.UUID,
                           password: str, code: str | None, *, recovery_allowed: bool, refused_event: str) -> User:
    """Changing MFA or the password is a step-up action: the user row locked (no two changes race),
    the password and, when MFA is on, a current code, every failure counted on the step-up counters
    (the row lock serializes their check and count), so a stolen session cannot guess its way to
    turning MFA off or taking the account over."""
    user = await session.get_one(User, user_id, with_for_update=LOCK_USER)
    await throttle.check_step_up(redis, settings, user_id)
    if not await passwords.verify_password(user.password_hash, password):
        await throttle.record_step_up_failure(redis, settings, user_id)
        await audit.append(session, "user", user.id, refused_event, {"reason": "password"})
        raise InvalidCredentials("The password is wrong.")
    if user.mfa_enabled:
        if not code:
            raise MfaRequired()
        if not (recovery_allowed and await _consume_recovery_code(session, user, code)):
            try:
                await _consume_totp(session, settings, user, code)
            except InvalidMfaCode:
                await throttle.record_step_up_failure(redis, settings, user_id)
                raise
    return user


async def mfa_enroll(session: AsyncSession, settings: Settings, redis: Redis, user_id: uuid.UUID, *,
                     password: str, code: str | None = None) -> Enrollment:
    """Start an enrollment (pending until verified). With MFA already on, a current code starts a new
    one: the old authenticator keeps working until the new one is verified."""
    user = await _confirm_step_up(session, settings, redis, user_id, password, code, recovery_allowed=False,
                                  refused_event="mfa.change_refused")
    secret = mfa.new_secret()
    user.mfa_pending_secret = mfa.encrypt_secret(settings.secret_key.get_secret_value(), secret)
    codes = mfa.new_recovery_codes()
    await session.execute(RecoveryCode.__table__.delete().where(RecoveryCode.user_id == user.id))
    session.add_all(RecoveryCode(id=uuid.uuid4(), user_id=user.id, code_hash=mfa.recovery_digest(code)) for code in codes)
    await audit.append(session, "user", user.id, "mfa.enrollment_started", {}, actor=user.id)
    return Enrollment(secret, mfa.provisioning_uri(secret, user.email, settings.mfa_issuer), codes)


async def mfa_verify(session: AsyncSession, settings: Settings, user: User, code: str) -> None:
    if user.mfa_pending_secret is None:
        raise Conflict("Start an enrollment first.", code="mfa_not_enrolling")
    secret = mfa.decrypt_secret(settings.secret_key.get_secret_value(), user.mfa_pending_secret)
    step = mfa.matching_step(secret, code, user.mfa_last_step)
    if step is None:
        raise InvalidMfaCode(keep_changes=False)
    user.mfa_secret, user.mfa_pending_secret = user.mfa_pending_secret, None
    user.mfa_enabled, user.mfa_last_step = True, step
    await audit.append(session, "user", user.id, "mfa.enabled", {}, actor=user.id)


async def mfa_disable(session: AsyncSession, settings: Settings, redis: Redis, user_id: uuid.UUID, *,
                      password: str, code: str) -> None:
    """Turn MFA off with the password and a current code (or a recovery code)."""
    user = await session.get_one(User, user_id, with_for_update=LOCK_USER)
    if not user.mfa_enabled:
        raise Conflict("Two-factor authentication is not on.", code="mfa_not_enabled")
    await _confirm_step_up(session, settings, redis, user_id, password, code, recovery_allowed=True,
                           refused_event="mfa.change_refused")
    user.mfa_enabled, user.mfa_secret, user.mfa_pending_secret = False, None, None
    await session.execute(RecoveryCode.__table__.delete().where(RecoveryCode.user_id == user.id))
    await audit.append(session, "user", user.id, "mfa.disabled", {}, actor=user.id)


# --- password ---------------------------------------------------------------------------------

async def change_password(session: AsyncSession, settings: Settings, redis: Redis, user_id: uuid.UUID,
                          session_id: uuid.UUID, *, current_password: str, new_password: str,
                          totp_code: str | None) -> int:
    """A new password, confirmed like an MFA change (the current password, a current TOTP code when
    MFA is on; recovery codes are for a lost authenticator, not for this); every other session of
    the user is revoked, the one that asked stays. Returns how many were revoked."""
    user = await session.get_one(User, user_id, with_for_update=LOCK_USER)
    passwords.check_policy(new_password, user.email)  # the registration policy, before any guess is counted
    await _confirm_step_up(session, settings, redis, user_id, current_password, totp_code, recovery_allowed=False,
                           refused_event="user.password_change_refused")
    user.password_hash = await passwords.hash_password(new_password)
    revoked = await session.scalars(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.id != session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason="password_changed")
        .returning(AuthSession.id)
    )
    others = sorted(str(sid) for sid in revoked)
    await audit.append(session, "user", user.id, "user.password_changed",
                       {"session_id": str(session_id), "revoked_sessions": others}, actor=user.id)
    return len(others)


async def require_step_up(session: AsyncSession, settings: Settings, redis: Redis, user_id: uuid.UUID,
                          code: str | None) -> None:
    """For sensitive actions (withdrawals): a fresh TOTP code when the user has MFA on. Wrong codes
    are counted: past the limit, 429 until the window ends (even for a right code)."""
    user = await session.get_one(User, user_id, with_for_update=LOCK_USER)
    if not user.mfa_enabled:
        return
    if not code:
        raise MfaRequired()
    await throttle.check_step_up(redis, settings, user_id)
    try:
        await _consume_totp(session, settings, user, code)
    except InvalidMfaCode:
        await throttle.record_step_up_failure(redis, settings, user_id)
        raise


async def _consume_totp(session: AsyncSession, settings: Settings, user: User, code: str, *,
                        ip: str | None = None) -> None:
    assert user.mfa_secret is not None
    secret = mfa.decrypt_secret(settings.secret_key.get_secret_value(), user.mfa_secret)
    step = mfa.matching_step(secret, code, user.mfa_last_step)
    if step is None:
        await audit.append(session, "user", user.id, "mfa.code_refused", {"ip": ip} if ip else {})
        raise InvalidMfaCode()
    user.mfa_last_step = step


async def _consume_recovery_code(session: AsyncSession, user: User, code: str) -> bool:
    row = await session.scalar(
        select(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.code_hash == mfa.recovery_digest(code),
               RecoveryCode.used_at.is_(None))
        .with_for_update()
    )
    if row is None:
        return False
    row.used_at = utcnow()
    await audit.append(session, "user", user.id, "mfa.recovery_code_used", {}, actor=user.id)
    return True


# --- administration ---------------------------------------------------------------------------

@dataclass(frozen=True)
class UserPage:
    items: list[User]
    next_cursor: str | None


async def list_users(session: AsyncSession, *, email: str | None, role: str | None, status: str | None,
                     limit: int, cursor: str | None) -> UserPage:
    query = select(User).order_by(User.created_at.desc(), User.id.desc()).limit(limit + 1)
    if email:
        query = query.where(User.email.contains(normalize_email(email), autoescape=True))
    if role:
        query = query.where(any_(User.roles) == role)
    if status:
        query = query.where(User.status == status)
    if cursor:
        query = query.where(keyset_before(cursor, User.created_at, User.id))
    rows = list(await session.scalars(query))
    return UserPage(*next_page(rows, limit))


async def _lock_admins(session: AsyncSession) -> list[uuid.UUID]:
    return list(await session.scalars(
        select(User.id).where(any_(User.roles) == "admin", User.status == "active").with_for_update(**LOCK_USER)
    ))


async def set_roles(session: AsyncSession, redis: Redis, actor: uuid.UUID, user_id: uuid.UUID,
                    roles: list[str], *, grant_id: uuid.UUID | None = None) -> User:
    """Replace the user's roles. The two-admin rule for privileged roles is ``identity.grants``'s:
    this is what it applies once a second admin confirms (``grant_id`` names that grant)."""
    unknown = sorted(set(roles) - set(ROLES))
    if unknown or not roles:
        raise InvalidInput("Unknown or empty roles.", code="invalid_roles", details={"unknown": unknown, "allowed": list(ROLES)})
    admins = await _lock_admins(session)  # serializes concurrent demotions of the last admins
    user = await get_user(session, user_id)
    if "admin" in user.roles and "admin" not in roles and admins == [user.id]:
        raise Conflict("The last admin cannot lose the admin role.", code="last_admin")
    before = list(user.roles)
    user.roles = sorted(set(roles))
    await session.flush()
    await session.refresh(user, ["updated_at"])  # set by the database (onupdate): load it, never lazily
    change = {"from": before, "to": user.roles, **({"grant_id": str(grant_id)} if grant_id else {})}
    await audit.append(session, "user", user.id, "user.roles_changed", change, actor=actor)
    after_commit(session, invalidate_rbac, redis, user.id)  # every API process drops its cached roles
    return user


async def add_role(session: AsyncSession, redis: Redis, actor: uuid.UUID, user_id: uuid.UUID, role: str, *,
                   grant_id: uuid.UUID) -> User:
    """One role on top of the user's current ones (a confirmed role grant). The current roles are read
    after the admin rows' lock, which every role change takes first, so no concurrent change is lost."""
    await _lock_admins(session)
    user = await session.get(User, user_id, populate_existing=True)
    if user is None:
        raise NotFound("No such user.", code="user_not_found")
    if role in user.roles:
        return user
    return await set_roles(session, redis, actor, user_id, sorted({*user.roles, role}), grant_id=grant_id)


async def set_status(session: AsyncSession, redis: Redis, actor: uuid.UUID, user_id: uuid.UUID,
                     status: str) -> User:
    admins = await _lock_admins(session)
    user = await get_user(session, user_id)
    if status == "suspended" and admins == [user.id]:
        raise Conflict("The last admin cannot be suspended.", code="last_admin")
    before = user.status
    user.status = status
    await session.flush()
    await session.refresh(user, ["updated_at"])
    await audit.append(session, "user", user.id, "user.status_changed", {"from": before, "to": status}, actor=actor)
    if status == "suspended":
        await logout_all(session, user.id, reason="suspended", actor=actor)
    after_commit(session, invalidate_rbac, redis, user.id)
    return user


async def user_access(db: AsyncSession | AsyncConnection, user_id: uuid.UUID) -> tuple[list[str], str] | None:
    """(roles, status) of a user, for the per-process RBAC cache."""
    row = (await db.execute(_USER_ACCESS, {"user_id": user_id})).first()
    return (list(row.roles), row.status) if row else None


async def ensure_user(session: AsyncSession, email: str, password: str, display_name: str, roles: list[str]) -> User:
    """The user with this email, created when missing (devnet demo accounts)."""
    existing = await session.scalar(select(User).where(User.email == normalize_email(email)))
    if existing is not None:
        return existing
    return await register(session, email, password, display_name, roles)
