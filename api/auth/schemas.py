from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from core.locales import LOCALE_PATTERN, MAX_LOCALE_LENGTH
from identity.models import ROLES

Role = Literal["customer", "support", "operator", "compliance", "admin"]
assert set(Role.__args__) == set(ROLES)  # type: ignore[attr-defined]


class RegisterIn(BaseModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)
    # Stripped before the length check: a blank name ("   ") is refused, not stored as "".
    display_name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    locale: str | None = Field(default=None, max_length=MAX_LOCALE_LENGTH, pattern=LOCALE_PATTERN, examples=["de-AT"],
                               description="The language of the emails we send (default: Accept-Language, else en).")


class ProfileUpdateIn(BaseModel):
    """``PATCH /me``: what the user may change about themselves; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    display_name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None
    locale: str | None = Field(default=None, max_length=MAX_LOCALE_LENGTH, pattern=LOCALE_PATTERN, examples=["fr"])
    withdrawal_allowlist: bool | None = Field(
        default=None, description="Withdrawals only to usable entries of your address book: on at once (cancelling a "
                                  "pending turn-off); off with `totp_code` when MFA is on, and only after the "
                                  "cooling-off (`withdrawal_allowlist_off_at`). As PUT /wallet/address-book/allowlist.")
    totp_code: str | None = Field(default=None, max_length=20,
                                  description="A current TOTP code: turning the withdrawal allowlist off asks for it "
                                              "when the account has MFA on.")

    def profile_changes(self) -> dict[str, str]:
        """What identity stores: the allowlist is custody's (the address book), and the code is spent there."""
        return self.model_dump(exclude_unset=True, exclude_none=True, exclude={"withdrawal_allowlist", "totp_code"})


class LoginIn(BaseModel):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    totp_code: str | None = Field(default=None, max_length=20)


class RefreshIn(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=200, description="Or the refresh_token cookie.")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    display_name: str
    roles: list[str]
    created_at: datetime


class ProfileOut(UserOut):
    mfa_enabled: bool
    email_verified: bool = Field(description="Whether you have proved you own this email (the link we emailed); "
                                             "until then you are nobody's escrow seller and cannot withdraw.")
    kyc_status: str
    locale: str | None


class MeOut(ProfileOut):
    """``GET`` and ``PATCH /me``: your profile, and your withdrawal allowlist (custody's address book)."""

    withdrawal_allowlist: bool = Field(description="Whether withdrawals go only to usable entries of your address "
                                                   "book (still true while a turn-off is pending).")
    withdrawal_allowlist_off_at: datetime | None = Field(
        description="While a turn-off is pending: when the allowlist stops applying (asked + the cooling-off). "
                    "Else null.")

    @classmethod
    def of(cls, user: object, *, withdrawal_allowlist: bool, off_at: datetime | None) -> MeOut:
        return cls(**ProfileOut.model_validate(user).model_dump(), withdrawal_allowlist=withdrawal_allowlist,
                   withdrawal_allowlist_off_at=off_at)


class AdminUserOut(ProfileOut):
    status: str
    updated_at: datetime


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    user: UserOut


class SessionOut(BaseModel):
    id: uuid.UUID
    created_at: datetime
    last_seen_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool


class SessionsOut(BaseModel):
    items: list[SessionOut]


class OkOut(BaseModel):
    ok: Literal[True] = True


class LogoutAllOut(BaseModel):
    revoked_sessions: int


class EmailVerifyIn(BaseModel):
    token: str = Field(min_length=1, max_length=200, description="The `token` of the emailed link.")


class EmailVerifiedOut(BaseModel):
    email_verified: Literal[True] = True


class EmailVerificationSentOut(BaseModel):
    email: str = Field(description="Where the new link was sent.")
    expires_at: datetime


class MfaEnrollOut(BaseModel):
    secret: str
    otpauth_uri: str
    recovery_codes: list[str] = Field(description="Shown once; each works once to disable MFA.")


class MfaCodeIn(BaseModel):
    code: str = Field(min_length=6, max_length=20, description="A code of the authenticator being enrolled.")


class MfaEnrollIn(BaseModel):
    password: str = Field(min_length=1, max_length=1024)
    code: str | None = Field(default=None, min_length=6, max_length=20,
                             description="A current TOTP code: required when MFA is already on (re-enrollment).")


class MfaDisableIn(BaseModel):
    password: str = Field(min_length=1, max_length=1024)
    code: str = Field(min_length=6, max_length=20, description="A current TOTP code, or a recovery code.")


class MfaStateOut(BaseModel):
    mfa_enabled: bool


class PasswordChangeIn(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024, description="The registration policy applies.")
    totp_code: str | None = Field(default=None, max_length=20,
                                  description="A current TOTP code: required when MFA is on.")


class PasswordChangedOut(BaseModel):
    revoked_sessions: int = Field(description="Your other sessions, all ended; this one stays.")


class RbacInvalidateIn(BaseModel):
    user_id: uuid.UUID | None = Field(default=None, description="Only this user's entry; all when omitted.")


class SignedEnvelopeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payload: dict = Field(description="The operator's payload with issued_at, expires_at and nonce.")
    signature: str = Field(max_length=200)
    key_id: str = Field(max_length=100)


class ReloadOut(BaseModel):
    applied: Literal[True] = True
    key_id: str
    nonce: str


class UserListQuery(BaseModel):
    email: str | None = Field(default=None, max_length=320)
    role: Role | None = None
    status: Literal["active", "suspended"] | None = None
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=500)


class UserListOut(BaseModel):
    items: list[AdminUserOut]
    next_cursor: str | None


class RolesIn(BaseModel):
    roles: list[Role] = Field(min_length=1, max_length=5)


class StatusIn(BaseModel):
    status: Literal["active", "suspended"]
