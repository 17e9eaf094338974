"""Request and response models of the API key routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from ipaddress import ip_network
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.time import utcnow
from identity.api_keys.models import ApiKey
from identity.api_keys.service import SCOPES

Scope = Literal[SCOPES]  # type: ignore[valid-type]


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["ERP integration"])
    scopes: list[Scope] = Field(min_length=1, max_length=len(SCOPES), examples=[["wallet:read", "deposits:read"]],
                                description="What the key may do; `compliance:*` only on a staff member's key.")
    expires_at: datetime | None = Field(default=None, description="Unset: the key does not expire.")
    allowed_ips: list[str] | None = Field(default=None, max_length=50, examples=[["203.0.113.0/24"]],
                                          description="CIDR networks the key may be used from; unset: any.")
    totp_code: str | None = Field(default=None, max_length=20,
                                  description="A current TOTP code: required when the account has MFA on.")

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and (value.tzinfo is None or value <= utcnow()):
            raise ValueError("must be a time in the future, with its UTC offset")
        return value

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        try:
            return [str(ip_network(network.strip(), strict=False)) for network in value]
        except ValueError as error:
            raise ValueError(f"not a CIDR network: {error}") from None


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    allowed_ips: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="Written every few seconds, not on every request.")

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(id=key.id, name=key.name, prefix=key.prefix, scopes=key.scopes, allowed_ips=key.allowed_ips,
                   created_at=key.created_at, expires_at=key.expires_at, revoked_at=key.revoked_at,
                   last_used_at=key.last_used_at)


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(description="The key itself, shown this once: only its SHA-256 is kept.")


class ApiKeyListOut(BaseModel):
    items: list[ApiKeyOut]
