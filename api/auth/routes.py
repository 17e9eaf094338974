"""Authentication and session routes, and the caller's profile (`/me`)."""

from __future__ import annotations

from aiohttp import web

from api.access import AUTHENTICATED, PUBLIC, SIGNED, roles
from api.auth.schemas import (
    EmailVerificationSentOut,
    EmailVerifiedOut,
    EmailVerifyIn,
    LoginIn,
    LogoutAllOut,
    MeOut,
    MfaCodeIn,
    MfaDisableIn,
    MfaEnrollIn,
    MfaEnrollOut,
    MfaStateOut,
    OkOut,
    PasswordChangedOut,
    PasswordChangeIn,
    ProfileUpdateIn,
    RbacInvalidateIn,
    RefreshIn,
    RegisterIn,
    ReloadOut,
    SessionOut,
    SessionsOut,
    SignedEnvelopeIn,
    TokensOut,
    UserOut,
)
from api.client_ip import client_ip
from api.http import json_response, path_uuid
from api.keys import REDIS, SETTINGS
from api.middleware import db_session
from api.principal import ACCESS_COOKIE, REFRESH_COOKIE, check_origin, current
from api.registry import Routes
from api.reload import apply_signed_reload
from core.control import invalidate_rbac
from core.errors import Unauthorized
from core.locales import from_accept_language
from custody import onboarding
from custody.withdrawals import address_book
from identity import service, throttle
from notifications.emails import product_email

auth = Routes(tag="auth")
profile = Routes(tag="me")

ACCESS_COOKIE_PATH = "/api/v1"
REFRESH_COOKIE_PATH = "/api/v1/auth"  # the refresh token is sent to the auth routes only


def _tokens_response(request: web.Request, issued: service.IssuedTokens) -> web.Response:
    settings = request.config_dict[SETTINGS]
    body = TokensOut(access_token=issued.access_token, refresh_token=issued.refresh_token,
                     expires_in=settings.access_token_ttl_seconds, user=UserOut.model_validate(issued.user))
    response = json_response(body)
    cookie = {"httponly": True, "samesite": "Lax", "secure": settings.secure_cookies}
    response.set_cookie(ACCESS_COOKIE, issued.access_token, path=ACCESS_COOKIE_PATH,
                        max_age=settings.access_token_ttl_seconds, **cookie)
    response.set_cookie(REFRESH_COOKIE, issued.refresh_token, path=REFRESH_COOKIE_PATH,
                        max_age=settings.refresh_token_ttl_seconds, **cookie)
    return response


def _clear_cookies(response: web.Response) -> web.Response:
    response.del_cookie(ACCESS_COOKIE, path=ACCESS_COOKIE_PATH)
    response.del_cookie(REFRESH_COOKIE, path=REFRESH_COOKIE_PATH)
    return response


@auth.post("/auth/register", access=PUBLIC, body=RegisterIn, responses={201: UserOut},
           errors={409: ("email_taken",), 422: ("weak_password",), 429: ("too_many_attempts",)})
async def register(request: web.Request, body: RegisterIn) -> UserOut:
    """Create an account (role customer). Registrations per client address are limited (429)."""
    await throttle.reserve_registration(request.config_dict[REDIS], request.config_dict[SETTINGS], client_ip(request))
    user = await onboarding.sign_up(db_session(request), request.config_dict[SETTINGS], email=body.email,
                                    password=body.password, display_name=body.display_name,
                                    locale=body.locale or from_accept_language(request.headers.get("Accept-Language")))
    return UserOut.model_validate(user)


@auth.post("/auth/login", access=PUBLIC, body=LoginIn, responses={200: TokensOut},
           errors={401: ("invalid_credentials", "mfa_required", "invalid_mfa_code"), 403: ("account_suspended",),
                   429: ("too_many_attempts",)})
async def login(request: web.Request, body: LoginIn) -> web.Response:
    """Log in: tokens in the body and as HttpOnly cookies. With MFA on, send `totp_code`."""
    app = request.config_dict
    issued = await service.login(db_session(request), app[REDIS], app[SETTINGS], email=body.email,
                                 password=body.password, totp_code=body.totp_code, ip=client_ip(request),
                                 user_agent=request.headers.get("User-Agent"))
    return _tokens_response(request, issued)


@auth.post("/auth/refresh", access=PUBLIC, body=RefreshIn, responses={200: TokensOut},
           errors={401: ("invalid_refresh_token", "refresh_token_reused", "session_expired"),
                   403: ("account_suspended",)})
async def refresh(request: web.Request, body: RefreshIn) -> web.Response:
    """Rotate the refresh token (body or cookie) for a new pair; a reused token revokes the session."""
    token = body.refresh_token
    if not token:
        token = request.cookies.get(REFRESH_COOKIE)
        if token:
            check_origin(request)  # the refresh cookie is ambient authority too (CSRF)
    if not token:
        raise Unauthorized("Send the refresh token in the body or its cookie.", code="invalid_refresh_token")
    issued = await service.refresh(db_session(request), request.config_dict[SETTINGS], token)
    return _tokens_response(request, issued)


@auth.post("/auth/logout", access=AUTHENTICATED, responses={200: OkOut})
async def logout(request: web.Request) -> web.Response:
    """End the current session and clear the cookies."""
    principal = current(request)
    await service.logout(db_session(request), principal.user_id, principal.session_id)
    return _clear_cookies(json_response(OkOut()))


@auth.post("/auth/logout-all", access=AUTHENTICATED, responses={200: LogoutAllOut})
async def logout_all(request: web.Request) -> web.Response:
    """Revoke every session of the caller, this one included."""
    revoked = await service.logout_all(db_session(request), current(request).user_id)
    return _clear_cookies(json_response(LogoutAllOut(revoked_sessions=revoked)))


@auth.get("/auth/sessions", access=AUTHENTICATED, responses={200: SessionsOut})
async def sessions(request: web.Request) -> SessionsOut:
    """The caller's active sessions."""
    principal = current(request)
    rows = await service.active_sessions(db_session(request), principal.user_id)
    return SessionsOut(items=[
        SessionOut(id=row.id, created_at=row.created_at, last_seen_at=row.last_seen_at, ip=row.ip,
                   user_agent=row.user_agent, current=row.id == principal.session_id)
        for row in rows
    ])


@auth.post("/auth/sessions/{session_id}/revoke", access=AUTHENTICATED, responses={200: OkOut},
           errors={404: ("session_not_found",)})
async def revoke_session(request: web.Request) -> OkOut:
    """Revoke one of the caller's sessions."""
    session_id = path_uuid(request, "session_id", "session_not_found")
    await service.revoke_session(db_session(request), current(request).user_id, session_id)
    return OkOut()


@auth.post("/auth/password", access=AUTHENTICATED, body=PasswordChangeIn, responses={200: PasswordChangedOut},
           errors={401: ("invalid_credentials", "mfa_required", "invalid_mfa_code"), 422: ("weak_password",),
                   429: ("too_many_attempts",)})
async def change_password(request: web.Request, body: PasswordChangeIn) -> PasswordChangedOut:
    """Change your password with the current one (and a current TOTP code when MFA is on). Every
    other session of yours is revoked; this one stays."""
    principal, app = current(request), request.config_dict
    revoked = await service.change_password(db_session(request), app[SETTINGS], app[REDIS], principal.user_id,
                                            principal.session_id, current_password=body.current_password,
                                            new_password=body.new_password, totp_code=body.totp_code)
    return PasswordChangedOut(revoked_sessions=revoked)


@auth.post("/auth/mfa/enroll", access=AUTHENTICATED, body=MfaEnrollIn, responses={200: MfaEnrollOut},
           errors={401: ("invalid_credentials", "mfa_required", "invalid_mfa_code"), 429: ("too_many_attempts",)})
async def mfa_enroll(request: web.Request, body: MfaEnrollIn) -> MfaEnrollOut:
    """Start TOTP enrollment with the password (and a current code when MFA is already on): a secret,
    its otpauth URI and ten recovery codes (pending until verified). The user is emailed."""
    session, app, user_id = db_session(request), request.config_dict, current(request).user_id
    enrollment = await service.mfa_enroll(session, app[SETTINGS], app[REDIS], user_id,
                                          password=body.password, code=body.code)
    product_email(session, user_id, "mfa.enrollment_started")
    return MfaEnrollOut(secret=enrollment.secret, otpauth_uri=enrollment.otpauth_uri,
                        recovery_codes=enrollment.recovery_codes)


@auth.post("/auth/mfa/verify", access=AUTHENTICATED, body=MfaCodeIn, responses={200: MfaStateOut},
           errors={401: ("invalid_mfa_code",), 409: ("mfa_not_enrolling",), 429: ("too_many_attempts",)})
async def mfa_verify(request: web.Request, body: MfaCodeIn) -> MfaStateOut:
    """Confirm enrollment with a first code: MFA is on from now."""
    session = db_session(request)
    user = await service.get_user(session, current(request).user_id)
    await service.mfa_verify(session, request.config_dict[SETTINGS], user, body.code)
    return MfaStateOut(mfa_enabled=True)


@auth.post("/auth/mfa/disable", access=AUTHENTICATED, body=MfaDisableIn, responses={200: MfaStateOut},
           errors={401: ("invalid_credentials", "mfa_required", "invalid_mfa_code"), 409: ("mfa_not_enabled",),
                   429: ("too_many_attempts",)})
async def mfa_disable(request: web.Request, body: MfaDisableIn) -> MfaStateOut:
    """Turn MFA off with the password and a current code or a recovery code. The user is emailed."""
    session, app, user_id = db_session(request), request.config_dict, current(request).user_id
    await service.mfa_disable(session, app[SETTINGS], app[REDIS], user_id, password=body.password, code=body.code)
    product_email(session, user_id, "mfa.disabled")
    return MfaStateOut(mfa_enabled=False)


@auth.post("/auth/email/verify", access=PUBLIC, body=EmailVerifyIn, responses={200: EmailVerifiedOut},
           errors={422: ("invalid_token",)})
async def verify_email(request: web.Request, body: EmailVerifyIn) -> EmailVerifiedOut:
    """Prove you own your account's email with the token of the link we emailed (once, before it expires).
    Escrows addressed to that email get you as their seller. Refusals: invalid_token (422: unknown,
    expired, used, or replaced by a newer link)."""
    await onboarding.verify_email(db_session(request), body.token)
    return EmailVerifiedOut()


@auth.post("/auth/email/resend", access=AUTHENTICATED, responses={202: EmailVerificationSentOut},
           errors={409: ("email_already_verified",), 429: ("too_many_attempts",)})
async def resend_verification_email(request: web.Request) -> EmailVerificationSentOut:
    """Email a new verification link (the earlier ones stop working). Refusals: email_already_verified
    (409), too_many_attempts (429 with Retry-After: a few per hour)."""
    app = request.config_dict
    user, expires_at = await onboarding.resend_verification(db_session(request), app[SETTINGS], app[REDIS],
                                                            current(request).user_id)
    return EmailVerificationSentOut(email=user.email, expires_at=expires_at)


@auth.post("/auth/rbac-cache/invalidate", access=roles("admin"), body=RbacInvalidateIn, responses={200: OkOut})
async def rbac_invalidate(request: web.Request, body: RbacInvalidateIn) -> OkOut:
    """Drop cached role lookups in every API process (one user, or all)."""
    await invalidate_rbac(request.config_dict[REDIS], body.user_id)
    return OkOut()


async def _reload(request: web.Request, body: SignedEnvelopeIn, kind: str) -> ReloadOut:
    app = request.config_dict
    verified = await apply_signed_reload(db_session(request), app[REDIS], app[SETTINGS], kind,  # type: ignore[arg-type]
                                         body.model_dump())
    return ReloadOut(key_id=verified.key_id, nonce=verified.nonce)


@auth.post("/auth/i18n/reload", access=SIGNED,
           body=SignedEnvelopeIn, responses={200: ReloadOut})
async def i18n_reload(request: web.Request, body: SignedEnvelopeIn) -> ReloadOut:
    """Swap the locale bundles in every API process (payload `{"bundles": {...}}`, signed by an operator key)."""
    return await _reload(request, body, "i18n")


@auth.post("/auth/readiness-policy/reload", access=SIGNED,
           body=SignedEnvelopeIn, responses={200: ReloadOut})
async def readiness_policy_reload(request: web.Request, body: SignedEnvelopeIn) -> ReloadOut:
    """Swap the readiness policy in every API process (payload `{"policy": {...}}`, signed by an operator key)."""
    return await _reload(request, body, "readiness_policy")


@profile.get("/me", access=AUTHENTICATED, responses={200: MeOut})
async def me(request: web.Request) -> MeOut:
    """The caller's profile, and whether their withdrawal allowlist is on (and until when, while a turn-off
    is pending)."""
    session, user_id = db_session(request), current(request).user_id
    user = await service.get_user(session, user_id)
    allowlist = await address_book.allowlist(session, user_id)
    return MeOut.of(user, withdrawal_allowlist=allowlist.enabled, off_at=allowlist.off_at)


@profile.patch("/me", access=AUTHENTICATED, body=ProfileUpdateIn, responses={200: MeOut},
               errors={401: ("mfa_required", "invalid_mfa_code"), 422: ("invalid_locale",),
                       429: ("too_many_attempts",)})
async def update_me(request: web.Request, body: ProfileUpdateIn) -> MeOut:
    """Change your display name, the locale of the emails we send you (`de`, `de-AT`, …) or your withdrawal
    allowlist (`withdrawal_allowlist`, as PUT /wallet/address-book/allowlist: on at once; off with the
    step-up, `totp_code` when MFA is on, after the cooling-off).

    Refusals of turning the allowlist off: mfa_required / invalid_mfa_code (401), too_many_attempts (429);
    nothing else changes then.
    """
    settings, session, user_id = request.config_dict[SETTINGS], db_session(request), current(request).user_id
    # The allowlist first: a wrong code is committed (its audit event) and must carry no profile change
    # with it; and the book's lock comes before the user row's, the order every change of the book takes.
    if body.withdrawal_allowlist is None:
        allowlist = await address_book.allowlist(session, user_id)
    else:
        allowlist = await address_book.set_allowlist(session, settings, request.config_dict[REDIS], user_id,
                                                     enabled=body.withdrawal_allowlist, totp_code=body.totp_code)
    user = await service.update_profile(session, user_id, body.profile_changes())
    return MeOut.of(user, withdrawal_allowlist=allowlist.enabled, off_at=allowlist.off_at)
