"""Every setting of every VirtuOZ process, in one class.

Values come from the environment with the prefix ``VIRTUOZ_`` (``VIRTUOZ_API_PORT=8480``);
lists and nested objects are JSON (``VIRTUOZ_CORS_ORIGINS='["https://app.example"]'``).
Secret ones may come from a file instead, ``VIRTUOZ_<NAME>_FILE`` (``SECRET_FILE_SETTINGS``).
The README documents each field. No other module reads ``os.environ`` for configuration.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from functools import cached_property, lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from eth_utils import to_checksum_address
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.errors import InvalidInput
from core.signing import load_public_key

# The default secret is public (it is in this file): production refuses it.
DEFAULT_SECRET_KEY = "virtuoz-devnet-insecure-secret-key-change-me"
MIN_SECRET_LENGTH = 32
MAX_ACCOUNT = 2**31 - 1  # BIP44 accounts are hardened indexes: 0 … 2**31 - 1
REGISTRATIONS_PER_HOUR = 20
LOCAL_REGISTRATIONS_PER_HOUR = 100_000  # devnet and test: every account comes from loopback
ADDRESS_COOLING_OFF_HOURS = 24.0
# Webhook retries and disabling when unset (Settings.webhook_*): production's, and the devnet's and
# tests', short enough to watch a retry, a failure for good and a disabled endpoint happen.
WEBHOOK_PRODUCTION = {"retry_base_seconds": 30.0, "retry_max_seconds": 3600.0, "retry_window_hours": 24.0,
                      "disable_after_hours": 72.0}
WEBHOOK_LOCAL = {"retry_base_seconds": 1.0, "retry_max_seconds": 30.0, "retry_window_hours": 1.0,
                 "disable_after_hours": 2.0}


@lru_cache(maxsize=64)
def _parse_networks(networks: tuple[str, ...]) -> tuple[IPv4Network | IPv6Network, ...]:
    return tuple(ip_network(network, strict=False) for network in networks)


def default_hot_account(account: int) -> int:
    """The hot wallet's account of a chain whose deposit account is ``account``: mirrored from the top."""
    return MAX_ACCOUNT - account


class Environment(StrEnum):
    DEVNET = "devnet"
    TEST = "test"
    PRODUCTION = "production"


class ChainSettings(BaseModel):
    """One EVM chain the platform follows."""

    name: str
    chain_id: int
    rpc_url: str
    native: str
    confirmations: int = Field(default=3, ge=1)
    tokens: dict[str, str] = Field(default_factory=dict)
    # Custody: the BIP44 account of this chain's deposit addresses, m/44'/60'/{account}'. Give each
    # chain its own account, so an address on one chain is never a deposit address on another.
    account: int = Field(default=0, ge=0, lt=2**31)
    # The hot wallet, m/44'/60'/{hot_account}'/0/0: a hardened account of its own, never a child of an
    # exported xpub (an xpub and any non-hardened child's key give the parent's private key). Unset:
    # counted down from the top of the range, far from the deposit accounts that count up from 0.
    hot_account: int = Field(default=0, ge=0, lt=2**31)
    # Scanner: the first block a scanner with no cursor yet reads (its very first run
    # only); unset: the node's head minus `scanner_start_margin`.
    start_height: int | None = Field(default=None, ge=0)
    # Deposits: when a deposit's block counts as final. "confirmations": `confirmations` blocks on
    # top of it; "finalized": that, and its block at or below the node's `finalized` block tag
    # (proof-of-stake finality: no reorg undoes a finalized block, however many confirmations a
    # deeper one would have beaten). Production refuses to start unless every chain sets it.
    finality: Literal["confirmations", "finalized"] = "confirmations"
    # Treasury: the chain's cold wallet, watch-only — its keys never touch the platform. The hot
    # wallet's surplus above its ceiling goes there (the signer checks it against its own copy,
    # VIRTUOZ_SIGNER_COLD_WALLETS), and refills of the hot wallet come from there, signed offline.
    # Unset: nothing moves between hot and cold on this chain (levels are still watched).
    cold_wallet: str | None = None

    @field_validator("cold_wallet")
    @classmethod
    def _cold_wallet_is_an_address(cls, value: str | None) -> str | None:
        return None if value is None else checksum_address(value, "cold_wallet")

    @model_validator(mode="before")
    @classmethod
    def _hot_account_defaults_from_account(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("hot_account") is None:
            try:
                account = int(data.get("account", 0))
            except (TypeError, ValueError):
                return data  # the account's own validation says what is wrong
            if 0 <= account <= MAX_ACCOUNT:
                data = {**data, "hot_account": default_hot_account(account)}
        return data

    @model_validator(mode="after")
    def _hot_account_is_not_a_deposit_account(self) -> ChainSettings:
        if self.hot_account == self.account:
            raise ValueError(f"chain {self.name}: hot_account must differ from account ({self.account}); the hot "
                             "wallet must not be derivable from the exported deposit xpub")
        return self

    @property
    def assets(self) -> list[str]:
        return [self.native, *self.tokens]

    def asset(self, symbol: str) -> str:
        """The asset's symbol as configured (matched case-insensitively); 422 ``asset_not_on_chain``."""
        found = next((known for known in self.assets if known.upper() == symbol.upper()), None)
        if found is None:
            raise InvalidInput(f"{symbol!r} is not an asset on {self.name}.", code="asset_not_on_chain",
                               details={"chain": self.name, "asset": symbol, "assets": self.assets})
        return found


def checksum_address(value: str, what: str) -> str:
    """``value`` as EIP-55; a settings error (ValueError) for anything but a 20-byte hex address."""
    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
        raise ValueError(f"{what}: {value!r} is not a 0x-prefixed 20-byte hex address")
    if value != value.lower() and value[2:] != value[2:].upper() and to_checksum_address(value) != value:
        raise ValueError(f"{what}: {value!r} has a wrong EIP-55 checksum")
    return to_checksum_address(value)


class HotWalletLevels(BaseModel):
    """What the hot wallet should hold of one asset on one chain, in major units of the asset.

    Below ``hot_floor`` a refill from the cold wallet is asked for (up to ``hot_target``); above
    ``hot_ceiling`` the surplus down to ``hot_target`` is sent to the cold wallet
    (``custody.treasury.hot_cold``).
    """

    model_config = ConfigDict(extra="forbid")

    hot_floor: str
    hot_target: str
    hot_ceiling: str

    @model_validator(mode="after")
    def _ordered(self) -> HotWalletLevels:
        levels = []
        for name in ("hot_floor", "hot_target", "hot_ceiling"):
            text = getattr(self, name)
            whole, _, fraction = text.partition(".")
            if not whole.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > 36:
                raise ValueError(f"{name}: {text!r} is not a plain decimal string")
            levels.append(Decimal(text))
        if not levels[0] <= levels[1] <= levels[2]:
            raise ValueError("hot_floor ≤ hot_target ≤ hot_ceiling, in major units")
        return self

    def minor(self, decimals: int) -> tuple[int, int, int]:
        """(floor, target, ceiling) in minor units of an asset with ``decimals``."""
        def scaled(text: str) -> int:
            whole, _, fraction = text.partition(".")
            if len(fraction.rstrip("0")) > decimals:
                raise ValueError(f"{text!r} has more than {decimals} decimals")
            return int(whole + fraction[:decimals].ljust(decimals, "0"))
        return scaled(self.hot_floor), scaled(self.hot_target), scaled(self.hot_ceiling)


def _default_hot_levels() -> dict[str, dict[str, HotWalletLevels]]:
    # The devnet chains. The devnet funds each hot wallet with 1000 of the native coin and 1,000,000
    # USDC, above these ceilings: a fresh devnet sends the surplus to its cold wallet.
    return {
        "ethereum": {"ETH": HotWalletLevels(hot_floor="2", hot_target="20", hot_ceiling="50"),
                     "USDC": HotWalletLevels(hot_floor="1000", hot_target="20000", hot_ceiling="50000")},
        "polygon": {"POL": HotWalletLevels(hot_floor="20", hot_target="200", hot_ceiling="500"),
                    "USDC": HotWalletLevels(hot_floor="1000", hot_target="20000", hot_ceiling="50000")},
    }


class UnknownChain(InvalidInput):
    code, message = "unknown_chain", "This chain is not configured."


def chain_named(chains: Sequence[ChainSettings], name: str) -> ChainSettings:
    """The configured chain ``name``; else 422 ``unknown_chain`` naming the configured ones."""
    for chain in chains:
        if chain.name == name:
            return chain
    raise UnknownChain(f"Unknown chain {name!r}.", details={"chain": name, "chains": [chain.name for chain in chains]})


class WithdrawalLimit(BaseModel):
    """The signer's own limits for one asset, in major units of that asset."""

    decimals: int = Field(ge=0, le=36)  # the signer has no database: it is told the asset's decimals
    single: str  # the most one transaction may move
    daily: str  # the most all transactions of a rolling 24 hours may move

    def minor(self, amount: str) -> int:
        whole, _, fraction = amount.partition(".")
        if not whole.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > self.decimals:
            raise ValueError(f"{amount!r} is not a plain decimal with at most {self.decimals} decimals")
        return int(whole + fraction.ljust(self.decimals, "0"))

    @model_validator(mode="after")
    def _amounts_parse(self) -> WithdrawalLimit:
        self.minor(self.single)
        self.minor(self.daily)
        return self


def _default_signer_limits() -> dict[str, WithdrawalLimit]:
    return {
        "ETH": WithdrawalLimit(decimals=18, single="50", daily="500"),
        "POL": WithdrawalLimit(decimals=18, single="100000", daily="1000000"),
        "USDC": WithdrawalLimit(decimals=6, single="250000", daily="2500000"),
    }


GWEI = 10**9


class FeeCaps(BaseModel):
    """What one chain's withdrawals may spend on gas, in minor units of its native coin (wei).

    A payment's value limits say nothing about its fees: a 1-wei payment with a huge tip would
    empty the hot wallet inside every value limit. The signer refuses anything above these caps and
    the custody worker never asks for it (it waits and alerts instead); both read this one rule.
    """

    model_config = ConfigDict(extra="forbid", strict=True)  # strict: wei are integers, never floats

    max_gas: int = Field(gt=0)  # the gas limit of one transaction
    max_fee_per_gas: int = Field(gt=0)
    max_priority_fee_per_gas: int = Field(ge=0)
    max_fee_per_tx: int = Field(gt=0)  # gas limit × max fee per gas: the most one transaction can cost
    # The worst-case fee of every transaction signed in a rolling 24 h, fee bumps and cancels included.
    daily_fee_budget: int = Field(gt=0)
    # Transactions after the first at one nonce (fee bumps, a filler or a cancel).
    max_replacements: int = Field(default=6, ge=1, le=50)

    def breach(self, gas: int, max_fee_per_gas: int, max_priority_fee_per_gas: int) -> tuple[str, str] | None:
        """``(reason, message)`` of the first cap the fees pass (reasons from ``core.sign_requests``), or None."""
        if gas > self.max_gas:
            return "gas_limit_above_cap", f"gas limit {gas} is above the cap {self.max_gas}"
        if max_fee_per_gas > self.max_fee_per_gas:
            return "max_fee_above_cap", f"max fee {max_fee_per_gas} wei/gas is above the cap {self.max_fee_per_gas}"
        if max_priority_fee_per_gas > self.max_priority_fee_per_gas:
            return "priority_fee_above_cap", (f"priority fee {max_priority_fee_per_gas} wei/gas is above the cap "
                                              f"{self.max_priority_fee_per_gas}")
        if gas * max_fee_per_gas > self.max_fee_per_tx:
            return "total_fee_above_cap", (f"gas limit × max fee = {gas * max_fee_per_gas} wei is above the cap "
                                           f"{self.max_fee_per_tx}")
        return None


def default_signer_fee_caps() -> dict[str, FeeCaps]:
    """The devnet chains; on mainnets these would be tight but not absurd for a busy day."""
    return {
        "ethereum": FeeCaps(max_gas=200_000, max_fee_per_gas=500 * GWEI, max_priority_fee_per_gas=50 * GWEI,
                            max_fee_per_tx=2 * 10**16, daily_fee_budget=2 * 10**18),
        "polygon": FeeCaps(max_gas=200_000, max_fee_per_gas=3_000 * GWEI, max_priority_fee_per_gas=500 * GWEI,
                           max_fee_per_tx=5 * 10**17, daily_fee_budget=50 * 10**18),
    }


class VaspIdentity(BaseModel):
    """A VASP this deployment answers for over the Travel Rule Protocol."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")  # in URLs and certificate file names
    legal_name: str = Field(min_length=1, max_length=200)
    lei: str | None = Field(default=None, pattern=r"^[A-Z0-9]{18}[0-9]{2}$")
    country: str = Field(default="US", pattern=r"^[A-Z]{2}$")
    host: str = "127.0.0.1"  # the mTLS listener of `virtuoz trp`
    port: int = Field(ge=1, le=65535)
    public_url: str | None = None  # how counterparties reach it; unset: https://host:port

    @property
    def base_url(self) -> str:
        return (self.public_url or f"https://{self.host}:{self.port}").rstrip("/")


class VaspDirectoryEntry(BaseModel):
    """A counterparty VASP we know: where its TRP endpoints are, by the name its certificate carries."""

    name: str = Field(min_length=1, max_length=200)  # its certificate's common name
    legal_name: str | None = Field(default=None, max_length=200)
    url: str = Field(pattern=r"^https://[^/?#@]+/?$", description="Its TRP origin: https://host[:port]")

    @property
    def origin(self) -> tuple[str, int]:
        """(host, port) of ``url``, as a Travel Address's inquiry URL is compared with it."""
        parts = urlsplit(self.url)
        return (parts.hostname or "").rstrip(".").lower(), parts.port or 443


def _default_vasps() -> list[VaspIdentity]:
    return [VaspIdentity(name="virtuoz", legal_name="VirtuOZ Devnet VASP", port=8482)]


def _default_kyc_withdrawal_limits() -> dict[int, dict[str, str]]:
    # Unverified customers may deposit anything but withdraw only about USD 100-150 a day.
    return {
        0: {"ETH": "0.05", "POL": "200", "USDC": "100"},
        1: {"ETH": "5", "POL": "20000", "USDC": "10000"},
        2: {"ETH": "50", "POL": "200000", "USDC": "100000"},
        3: {},
    }


class ReadinessPolicy(BaseModel):
    """Which dependencies `/readiness` requires, and how long each may take to answer.

    Data, not code: the identity issue adds a signed reload that swaps it at run time.
    """

    database: bool = True
    redis: bool = True
    chains: bool = True
    workers: list[str] = Field(default_factory=lambda: ["custody", "deposits", "compliance", "notifications",
                                                        "allocator", "treasury", "webhooks"])
    timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    heartbeat_max_age_seconds: float = Field(default=30.0, gt=0)


BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps")


def is_redis_url(url: str) -> bool:
    """A broker URL naming Redis (otherwise RabbitMQ)."""
    return url.startswith(("redis://", "rediss://", "unix://"))


class SettingsError(RuntimeError):
    """The configuration cannot run in this environment; the message says why."""


# Settings that may come from a file, VIRTUOZ_<NAME>_FILE=/run/secrets/…, instead of the environment:
# a value in the environment shows in `docker inspect`, `/proc/<pid>/environ` and crash reports. The
# chains are among them because RPC provider URLs carry API keys. The signer passphrase and the
# custody request key have had file settings of their own from the start.
SECRET_FILE_SETTINGS = ("secret_key", "database_url", "redis_url", "broker_url", "jwt_private_key", "jwt_public_key",
                        "smtp_password", "ingest_hmac_secret", "chains", "s3_access_key_id", "s3_secret_access_key")


class SecretFiles(PydanticBaseSettingsSource):
    """``VIRTUOZ_<NAME>_FILE`` for each of ``SECRET_FILE_SETTINGS``: the file's text, without its final newline.

    Setting both the variable and its file is refused rather than letting one silently win; so is
    a file that cannot be read or is empty (an empty secret key or URL is never what was meant).
    """

    def get_field_value(self, field: object, field_name: str) -> tuple[object, str, bool]:
        return None, field_name, False  # every value is read at once, in __call__

    def __call__(self) -> dict[str, object]:
        values: dict[str, object] = {}
        for name in SECRET_FILE_SETTINGS:
            variable = f"VIRTUOZ_{name.upper()}"
            path = os.environ.get(f"{variable}_FILE")
            if not path:
                continue
            if os.environ.get(variable) is not None:
                raise SettingsError(f"{variable} and {variable}_FILE are both set: keep one")
            try:
                text = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeError) as error:
                raise SettingsError(f"{variable}_FILE: cannot read {path}: {error}") from None
            if not text:
                raise SettingsError(f"{variable}_FILE: {path} is empty")
            values[name] = text
            if self.field_is_complex(self.settings_cls.model_fields[name]):  # JSON, as in the environment
                try:
                    values[name] = json.loads(text)
                except ValueError:
                    raise SettingsError(f"{variable}_FILE: {path} is not JSON") from None
        return values


class Settings(BaseSettings):
    # validate_by_name: a field read from the environment under an alias (a renamed setting that keeps
    # its old name) is still given by its name in code, Settings(field=...).
    model_config = SettingsConfigDict(env_prefix="VIRTUOZ_", extra="ignore", validate_by_name=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword overrides, then the environment, then VIRTUOZ_<NAME>_FILE (SecretFiles refuses both).
        return init_settings, env_settings, SecretFiles(settings_cls), dotenv_settings, file_secret_settings

    # Fail closed: a process started without VIRTUOZ_ENV is a production process. The public default
    # secret and non-Secure cookies are accepted only when devnet or test is asked for by name
    # (`make devnet`, `make test` and `make bench` export it; the devnet passes it to its children).
    env: Environment = Environment.PRODUCTION
    data_dir: Path = Path(".devnet")

    # Files: dispute evidence, KYC documents, compliance reports (core.storage.file_store). Unset: local
    # directories (<data_dir>/evidence, the reports directory), which only one host sees. `s3://bucket/prefix`:
    # an S3-compatible bucket that every API replica and the compliance worker share, under the same
    # sharded keys (<prefix>/evidence/ab/cd/<id>, <prefix>/reports/…). Credentials never go in a URL.
    file_store: str | None = None
    s3_endpoint_url: str | None = None  # MinIO, moto or another S3-compatible service; unset: AWS
    s3_region: str | None = None  # unset: botocore's own (AWS_REGION, ~/.aws/config)
    # Both or neither; neither: botocore's credential chain (an instance or pod role, AWS_* variables).
    # Secret, both of them: never logged, never in an error.
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None

    # Unset means "embedded": `virtuoz devnet` and the test fixtures start PostgreSQL and Redis
    # and hand their URLs to every child process. Production requires both.
    database_url: str | None = None
    redis_url: str | None = None
    # Where Dramatiq's queues live: unset, Redis (redis_url); amqp://… for RabbitMQ when scaled out.
    # Redis stays required beside it, for pub/sub, throttles and in-flight claims.
    broker_url: str | None = None
    database_pool_size: int = Field(default=10, ge=1)

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8480, ge=1, le=65535)
    # `virtuoz api` processes sharing the port (SO_REUSEPORT), each with its own database pool; 1 serves
    # in the one process. One per core by default: one event loop runs Python on one core at a time.
    api_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    public_url: str | None = None

    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    cookie_secure: bool | None = None  # None: Secure everywhere but devnet and test

    # Identity. Access JWTs are short-lived; refresh tokens are opaque and rotated.
    jwt_algorithm: Literal["HS256", "EdDSA"] = "HS256"
    jwt_private_key: SecretStr | None = None  # PEM, EdDSA only
    jwt_public_key: str | None = None  # PEM, EdDSA only
    access_token_ttl_seconds: int = Field(default=600, ge=300, le=900)
    refresh_token_ttl_seconds: int = Field(default=14 * 24 * 3600, ge=3600)
    login_max_failures: int = Field(default=10, ge=1)
    login_ip_max_failures: int = Field(default=50, ge=1)
    login_failure_window_seconds: int = Field(default=900, ge=60)
    # A session ends this long after its login however often it is refreshed: a stolen refresh
    # token cannot be kept alive for ever by rotating it.
    session_max_age_hours: int = Field(default=720, ge=1)
    # Registrations per client address (IPv6: per /64) in an hour; unset: 20, or 100000 in devnet
    # and test, where every account of the suite comes from one loopback address.
    registrations_per_hour: int | None = Field(default=None, ge=1)
    # The reverse proxies (CIDRs) whose X-Forwarded-For is believed: from one of them the client is
    # the right-most address that is not a trusted proxy; from anyone else, the peer itself.
    trusted_proxies: list[str] = Field(default_factory=list)
    session_cache_seconds: float = Field(default=1.0, ge=0, le=1.0)
    # API keys: active keys per user (409 past it), and each key's rate limit, a token bucket of
    # this many requests refilled evenly over a minute (429 with Retry-After when empty).
    api_key_max_per_user: int = Field(default=20, ge=1, le=1000)
    api_key_requests_per_minute: int = Field(default=600, ge=1)
    mfa_issuer: str = "VirtuOZ"
    # Email ownership: a new account is emailed a single-use link, {public base URL}/verify-email?token=…,
    # valid this long; the owner may ask for a new one this many times per window (429 past it).
    email_verification_ttl_seconds: int = Field(default=48 * 3600, ge=300)
    email_verification_resend_max: int = Field(default=3, ge=1)
    email_verification_resend_window_seconds: int = Field(default=3600, ge=60)
    # A privileged role (operator, compliance, admin) asked for by one admin waits this long for a
    # second admin's confirmation, then expires (identity.grants).
    role_grant_expiry_hours: float = Field(default=24.0, gt=0)
    operator_public_keys: dict[str, str] = Field(default_factory=dict)

    # Money.
    sandbox_credit: str | None = None  # e.g. "USD:10000.00": every new user gets it (devnet, test)
    escrow_fee_bps: int = Field(default=0, ge=0, le=10_000)  # platform fee on release, basis points
    evidence_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    evidence_max_files: int = Field(default=20, ge=1)

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # A client trickling its body holds a connection (and whatever the handler holds): reading a
    # body stops after this long in total, or this long without a byte.
    body_read_timeout_seconds: float = Field(default=120.0, gt=0)
    body_idle_timeout_seconds: float = Field(default=15.0, gt=0)
    form_max_fields: int = Field(default=50, ge=2, le=1000)  # parts of one multipart form, files included
    # /readiness and /status answer from one probe per period, however often they are asked.
    probe_cache_seconds: float = Field(default=2.0, ge=0, le=60)
    cors_origins: list[str] = Field(default_factory=list)
    metrics_allowlist: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    # /metrics of every process but the API (core.metrics): unset, none. One port per process: in a
    # container each has its own address; `virtuoz devnet` gives each process a free port.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    docs_enabled: bool = True

    chains: list[ChainSettings] = Field(default_factory=list)
    readiness: ReadinessPolicy = Field(default_factory=ReadinessPolicy)

    # also how often a stream re-checks its session and user: at most 15 s of life after a logout
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0, le=15)
    heartbeat_interval_seconds: float = Field(default=5.0, gt=0)
    # Scheduler replicas (README, "Processes"): the leading one renews its lease (a PostgreSQL
    # advisory lock on a session that the server ends after this long without a renewal); a standby
    # takes over within about this long of the leader dying or hanging.
    scheduler_lease_seconds: float = Field(default=15.0, ge=1, le=600)
    log_level: str = "INFO"
    log_json: bool = True

    # Custody. The signer's keystore holds the encrypted seed and is read by the signer
    # only; the xpub file is public and is all the allocator ever reads. Unset paths default to
    # <data_dir>/signer and <data_dir>/xpubs.json (filled in when the settings are built).
    signer_keystore_dir: Path | None = None
    xpub_file: Path | None = None
    # The signer key's public half (`virtuoz signer init` writes it, base64url): every process that
    # believes the signer (its replies, the xpub file) reads it from here. Default <data_dir>/signer-key.pub.
    signer_public_key_file: Path | None = None
    # Devnet and test only (the signer refuses it elsewhere): in production the passphrase is read
    # from a file, e.g. a tmpfs secret or a descriptor (/dev/fd/N).
    signer_passphrase: SecretStr | None = None
    signer_passphrase_file: Path | None = None
    address_pool_low_water: int = Field(default=20, ge=0)
    address_pool_batch: int = Field(default=50, ge=1, le=10_000)


    # Withdrawals. Amounts are per asset, decimal strings in major units.
    # A flat fee per asset, taken on confirmation into the `fees` system account (the hot wallet
    # pays the network's gas); an asset not listed has no fee.
    withdrawal_fees: dict[str, str] = Field(default_factory=lambda: {"ETH": "0.0005", "POL": "0.05", "USDC": "1"})
    # FATF R.16: from this amount a withdrawal must carry beneficiary data (Travel Rule).
    withdrawal_travel_rule_thresholds: dict[str, str] = Field(
        default_factory=lambda: {"ETH": "0.5", "POL": "1000", "USDC": "1000"})
    # Two different operators must approve (four eyes) once a customer's withdrawals of the asset
    # requested over a rolling 24 hours, the new one included, reach this amount.
    withdrawal_four_eyes_thresholds: dict[str, str] = Field(
        default_factory=lambda: {"ETH": "10", "POL": "20000", "USDC": "10000"})
    # The address book's cooling-off, in hours: a new entry is usable by a withdrawal under the allowlist
    # this long after it was added, and turning the allowlist off takes effect this long after it was
    # asked: a stolen session (and code) cannot add an address, or lift the allowlist, and drain at once.
    # Unset: 24, or 0 in devnet and test. VIRTUOZ_ADDRESS_BOOK_COOLING_HOURS is its former name, still read.
    address_cooling_off_hours: float | None = Field(
        default=None, ge=0, le=24 * 30,
        validation_alias=AliasChoices("VIRTUOZ_ADDRESS_COOLING_OFF_HOURS", "VIRTUOZ_ADDRESS_BOOK_COOLING_HOURS"))
    # One address per line, '#' comments. The API refuses destinations on it; the signer reads its
    # own copy (signer_sanctions_list_file, default: the same file). Unset: an empty list.
    sanctions_list_file: Path | None = None
    # The custody worker's Ed25519 request key (PEM): it authorizes every sign request. Inline PEM
    # wins over the file; the file defaults to <data_dir>/custody-request-key.pem.
    custody_request_key: SecretStr | None = None
    custody_request_key_file: Path | None = None
    # The signer holds only the public half: base64url of the 32 raw bytes, inline or in a file
    # (default <data_dir>/custody-request-key.pub).
    signer_request_public_key: str | None = None
    signer_request_public_key_file: Path | None = None
    signer_sanctions_list_file: Path | None = None
    # The signer's own per-asset limits; the API reads them too, to refuse at request what the signer
    # would refuse after approval (custody.withdrawals.limits).
    signer_limits: dict[str, WithdrawalLimit] = Field(default_factory=_default_signer_limits)
    # Per chain name: the signer's fee caps, which the custody worker applies to its quotes and bumps
    # too. A chain without caps is one the signer signs nothing on.
    signer_fee_caps: dict[str, FeeCaps] = Field(default_factory=default_signer_fee_caps)
    signer_journal_file: Path | None = None  # SQLite; default <signer_keystore_dir>/journal.sqlite3
    # Tests only: after journaling a signature and before answering, the signer writes this file and
    # stops, so a test can kill it in exactly that window. Refused in any other environment.
    signer_test_pause_file: Path | None = None
    withdrawal_gas_limit_native: int = Field(default=21_000, ge=21_000)
    withdrawal_gas_limit_token: int = Field(default=100_000, ge=21_000)
    withdrawal_min_priority_fee_wei: int = Field(default=1_000_000_000, ge=0)
    # A transaction not mined this many blocks after its broadcast is replaced (same nonce) with
    # fees raised by at least withdrawal_fee_bump_percent (nodes demand 10 %).
    withdrawal_stuck_blocks: int = Field(default=12, ge=1)
    withdrawal_fee_bump_percent: int = Field(default=25, ge=10, le=1000)
    # A nonce not mined has its highest-fee transaction sent again every this many blocks (a node may
    # have dropped it); a fee bump the node rejected is tried again after as many.
    withdrawal_rebroadcast_blocks: int = Field(default=4, ge=1)
    # A sign request not answered after this long is sent again (the signer answers repeats alike).
    withdrawal_resend_seconds: float = Field(default=15.0, gt=0)
    withdrawal_track_seconds: float = Field(default=2.0, gt=0)  # how often the scheduler asks for tracking

    # Treasury, hot and cold (custody.treasury.hot_cold). Per chain name, per asset: the hot wallet's
    # floor, target and ceiling (major units); a chain or asset not listed is not watched.
    treasury_hot_levels: dict[str, dict[str, HotWalletLevels]] = Field(default_factory=_default_hot_levels)
    treasury_check_seconds: float = Field(default=60.0, gt=0)  # how often the scheduler asks for the check
    # The signer's own copy of each chain's cold wallet (chain name → address): it signs a hot → cold
    # transfer only to this address, whatever the request or the platform's settings say.
    signer_cold_wallets: dict[str, str] = Field(default_factory=dict)

    # Treasury, sweeps (custody.treasury): deposit addresses holding at least the minimum of an asset
    # (major units; an asset not listed is never swept) are swept to the hot wallet. The scheduler
    # looks for them every sweep_interval_seconds and drives sweeps in flight every
    # sweep_track_seconds; a refused top-up is asked again, and the address of a failed sweep swept
    # again, after sweep_retry_seconds.
    sweep_minimums: dict[str, str] = Field(default_factory=lambda: {"ETH": "0.01", "POL": "1", "USDC": "10"})
    sweep_interval_seconds: float = Field(default=60.0, gt=0)
    sweep_track_seconds: float = Field(default=5.0, gt=0)
    sweep_retry_seconds: float = Field(default=300.0, gt=0)

    # Scanner: `virtuoz scanner --chain NAME`, one process per chain (README, "Deposits").
    scanner_poll_seconds: float = Field(default=0.5, gt=0, le=60)  # an idle scanner asks for a new head this often
    scanner_batch_blocks: int = Field(default=50, ge=1, le=1000)  # blocks per batched JSON-RPC request
    scanner_concurrency: int = Field(default=4, ge=1, le=32)  # batched requests in flight while catching up
    scanner_commit_blocks: int = Field(default=1000, ge=1)  # at most this many blocks per database transaction
    # Recent block hashes kept per chain: a reorg deeper than this halts the scanner with an alert.
    scanner_reorg_window: int = Field(default=256, ge=2, le=100_000)
    scanner_start_margin: int = Field(default=64, ge=0)
    scanner_rpc_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    scanner_max_backoff_seconds: float = Field(default=30.0, gt=0)
    scanner_resend_seconds: float = Field(default=30.0, gt=0)  # an unanswered credit/reversal request is re-sent
    # Consecutive blocks whose logsBloom says a watched token's Transfer may be there while the node
    # answers no such log (asked by range, then by block hash): this many in a row raise the
    # virtuoz_scanner_empty_logs_alert gauge. Blooms of busy blocks match by chance: keep it high there.
    scanner_empty_logs_alert_blocks: int = Field(default=20, ge=1)
    # Scanner standby (README, "Deposits"): the active scanner renews its lease (a PostgreSQL advisory
    # lock on a session that the server ends after this long without a renewal); a standby takes
    # over within about this long of the active one dying or hanging.
    scanner_lease_seconds: float = Field(default=15.0, ge=1, le=600)
    # External watchers sign `POST /platform/crypto/scanner/ingest` bodies with it (HMAC-SHA256).
    ingest_hmac_secret: SecretStr | None = None
    # An idle worker thread polls its queues at least this often (Dramatiq's worker_timeout): a
    # confirmed deposit waits at most this long for the deposits worker to pick up its credit.
    worker_poll_ms: int = Field(default=200, ge=10, le=10_000)

    # Helpdesk: how often the scheduler asks for the SLA breach check.
    helpdesk_breach_check_seconds: float = Field(default=60.0, gt=0)

    # Content: CMS caching and outgoing email. The devnet points SMTP at its own
    # aiosmtpd server (devnet_smtp_port), which keeps every message as a .eml under data_dir/mail.
    cms_cache_max_age_seconds: int = Field(default=60, ge=0, le=86_400)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "VirtuOZ <no-reply@virtuoz.local>"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Retries of one delivery (Dramatiq retries of `notifications.send_email`): exponential from the backoff,
    # capped at an hour; after the last one the delivery is recorded `failed`.
    smtp_max_retries: int = Field(default=8, ge=0, le=20)
    smtp_retry_backoff_ms: int = Field(default=15_000, ge=1)
    devnet_smtp_port: int = Field(default=8025, ge=1, le=65535)

    # Webhooks (notifications.webhooks; README, "Webhooks"). The webhooks worker POSTs a delivery and
    # waits webhook_timeout_seconds for a 2xx; a failure is retried with exponential backoff and full
    # jitter (from the base, capped) until the window after the event has passed, then `failed`. An
    # endpoint failing for webhook_disable_after_hours is disabled. Unset: production's values (30 s,
    # 1 h, 24 h, 72 h), or short ones in devnet and test (WEBHOOK_LOCAL). The scheduler re-sends due
    # deliveries (retries, messages lost in a crash) every webhook_dispatch_seconds, at most a batch each.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_dispatch_seconds: float = Field(default=5.0, gt=0)
    webhook_dispatch_batch: int = Field(default=500, ge=1, le=10_000)
    webhook_retry_base_seconds: float | None = Field(default=None, gt=0)
    webhook_retry_max_seconds: float | None = Field(default=None, gt=0)
    webhook_retry_window_hours: float | None = Field(default=None, gt=0, le=24 * 30)
    webhook_disable_after_hours: float | None = Field(default=None, gt=0)
    # Endpoints on loopback or private networks, over plain http: an SSRF hole in production, where an
    # endpoint must be https on a public address. Unset: false, or true in devnet and test.
    webhook_allow_private: bool | None = None
    # Endpoints per user (409 webhook_limit_reached past it): each one is a worker's time on every event.
    webhook_max_per_user: int = Field(default=10, ge=1, le=100)
    # After a secret rotation the previous secret still signs (a second v1=) this long, so a receiver
    # can switch to the new one without refusing a delivery in between; 0: it stops at once.
    webhook_secret_rotation_hours: float = Field(default=24.0, ge=0, le=24 * 30)

    # Compliance. Jurisdictions are data: unset, the packaged compliance/jurisdictions.json.
    compliance_jurisdictions_file: Path | None = None
    # The scheduler's reports (daily large_transactions, monthly others) run for each of these codes.
    compliance_report_jurisdictions: list[str] = Field(default_factory=lambda: ["US", "EU", "CA"])
    # Reports are written under <data_dir>/reports unless this is set.
    compliance_reports_dir: Path | None = None
    # A pending KYC case older than this is past its SLA (the queue shows its age and the breach).
    kyc_sla_hours: float = Field(default=48.0, gt=0)
    # Optional documents on POST /me/kyc (multipart field `documents`), stored like dispute evidence.
    kyc_document_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)  # per file
    kyc_document_max_files: int = Field(default=5, ge=1, le=50)  # per submission
    # Withdrawal limits by KYC level (compliance.kyc.limits): {level: {asset: amount}}, major units, the
    # most a customer may request in a rolling 24 hours. A user's level is their approved case's level,
    # 0 otherwise; the table of the highest configured level at or below it applies; an asset it does
    # not list has no KYC limit. `{}` turns KYC limits off.
    kyc_withdrawal_limits: dict[int, dict[str, str]] = Field(default_factory=_default_kyc_withdrawal_limits)
    # Automatic transaction rules (large, structuring) use this jurisdiction's large_transactions
    # threshold; the scheduler runs them this often over transfers older than the settle delay.
    compliance_rules_jurisdiction: str = "FATF"
    compliance_rules_interval_seconds: float = Field(default=60.0, gt=0)
    compliance_rules_settle_seconds: float = Field(default=60.0, ge=0)
    # The reconciliation job (compliance.reconcile_balances): every this many hours (aligned on
    # midnight UTC; a divisor of 24) a `reconciliation` report of the interval just ended, filed under
    # this jurisdiction: hot wallets and deposit addresses on chain against the ledger's liabilities.
    reconciliation_interval_hours: int = Field(default=6, ge=1, le=24)
    reconciliation_jurisdiction: str = "FATF"

    # Travel Rule. `virtuoz trp` serves each identity on its own mTLS port; outbound
    # transfers come from `travel_rule_identity`. Certificates: <pki dir>/{ca,<name>}.pem and
    # <name>.key (the devnet generates its own CA and certificates at first start).
    travel_rule_identities: list[VaspIdentity] = Field(default_factory=_default_vasps)
    travel_rule_identity: str = "virtuoz"
    travel_rule_pki_dir: Path | None = None  # unset: <data_dir>/trp-pki
    travel_rule_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # A transfer still draft or sent this long after it was created (or sent) expires (hourly job);
    # each transfer keeps the deadline it was given, so changing this moves no existing goalposts.
    travel_rule_expiry_hours: float = Field(default=72.0, gt=0)
    # Counterparty VASPs the operator vouches for. A Travel Address at a private, loopback or
    # link-local address is refused unless its https origin is one of these (or one of our own
    # identities): otherwise a customer could point the compliance worker at our own network.
    travel_rule_vasp_directory: list[VaspDirectoryEntry] = Field(default_factory=list)

    # Devnet only: where `virtuoz devnet` puts its embedded servers and chains.
    devnet_postgres_port: int = 8432
    devnet_redis_port: int = 8479
    # /metrics of the devnet's processes but the API: this port and the next ones, one per process in
    # devnet.json's order ("metrics"); 0 picks free ports (side-by-side devnets in tests).
    devnet_metrics_port: int = Field(default=9480, ge=0, le=65535)
    devnet_chain_ports: dict[str, int] = Field(default_factory=lambda: {"ethereum": 8545, "polygon": 8546})
    devnet_block_time: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _custody_paths_default_to_data_dir(self) -> Settings:
        # Custody
        if self.signer_keystore_dir is None:
            self.signer_keystore_dir = self.data_dir / "signer"
        if self.xpub_file is None:
            self.xpub_file = self.data_dir / "xpubs.json"
        if self.signer_public_key_file is None:
            self.signer_public_key_file = self.data_dir / "signer-key.pub"
        # Withdrawals
        if self.custody_request_key_file is None:
            self.custody_request_key_file = self.data_dir / "custody-request-key.pem"
        if self.signer_request_public_key_file is None:
            self.signer_request_public_key_file = self.data_dir / "custody-request-key.pub"
        if self.signer_sanctions_list_file is None:
            self.signer_sanctions_list_file = self.sanctions_list_file
        if self.signer_journal_file is None:
            self.signer_journal_file = self.signer_keystore_dir / "journal.sqlite3"
        # Travel Rule
        if self.travel_rule_pki_dir is None:
            self.travel_rule_pki_dir = self.data_dir / "trp-pki"
        return self

    def chain(self, name: str) -> ChainSettings:
        """The configured chain ``name``; else 422 ``unknown_chain``."""
        return chain_named(self.chains, name)

    def vasp(self, name: str | None = None) -> VaspIdentity:
        """A configured Travel Rule identity; by default the one outbound transfers come from."""
        wanted = name or self.travel_rule_identity
        for identity in self.travel_rule_identities:
            if identity.name == wanted:
                return identity
        raise SettingsError(f"no Travel Rule identity named {wanted!r} in VIRTUOZ_TRAVEL_RULE_IDENTITIES")

    @field_validator("file_store", "s3_endpoint_url")
    @classmethod
    def _storage_urls_parse(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        variable = f"VIRTUOZ_{(info.field_name or '').upper()}"
        parts = urlsplit(value)
        if "@" in parts.netloc:
            # A SettingsError, not a ValueError: pydantic would quote the value, credentials and all.
            raise SettingsError(f"{variable} carries credentials: give them in VIRTUOZ_S3_ACCESS_KEY_ID and "
                                "VIRTUOZ_S3_SECRET_ACCESS_KEY")
        if info.field_name == "file_store":
            if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
                raise ValueError("the file store is s3://bucket or s3://bucket/prefix (unset: the local directories)")
        elif parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the S3 endpoint is an http(s) URL")
        return value

    @model_validator(mode="after")
    def _s3_keys_come_in_pairs(self) -> Settings:
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise SettingsError("VIRTUOZ_S3_ACCESS_KEY_ID and VIRTUOZ_S3_SECRET_ACCESS_KEY are given together, or "
                                "neither (botocore's own credentials)")
        return self

    @field_validator("reconciliation_interval_hours")
    @classmethod
    def _interval_divides_the_day(cls, value: int) -> int:
        if 24 % value:
            raise ValueError("the reconciliation interval divides 24 hours: 1, 2, 3, 4, 6, 8, 12 or 24")
        return value

    @field_validator("kyc_withdrawal_limits")
    @classmethod
    def _kyc_limits_are_decimals(cls, value: dict[int, dict[str, str]]) -> dict[int, dict[str, str]]:
        for level, table in value.items():
            if not 0 <= level <= 3:
                raise ValueError(f"KYC levels are 0-3, not {level}")
            for asset, amount in table.items():
                whole, _, fraction = amount.partition(".")
                if not whole.isdigit() or (fraction and not fraction.isdigit()):
                    raise ValueError(f"level {level} {asset}: {amount!r} is not a plain decimal string")
        return value

    @field_validator("sweep_minimums")
    @classmethod
    def _sweep_minimums_are_decimals(cls, value: dict[str, str]) -> dict[str, str]:
        for asset, amount in value.items():
            whole, _, fraction = amount.partition(".")
            if not whole.isdigit() or (fraction and not fraction.isdigit()):
                raise ValueError(f"sweep minimum of {asset}: {amount!r} is not a plain decimal string")
        return value

    @field_validator("ingest_hmac_secret")
    @classmethod
    def _ingest_secret_is_long(cls, value: SecretStr | None) -> SecretStr | None:
        # Scanner: whoever holds it can have events verified and credited.
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"the ingest HMAC secret must be at least {MIN_SECRET_LENGTH} characters")
        return value

    @field_validator("chains")
    @classmethod
    def _hot_accounts_are_their_own(cls, value: list[ChainSettings]) -> list[ChainSettings]:
        # One chain's hot account as another's deposit account would put that hot wallet under an
        # exported xpub after all; two chains on one hot account would share a key for no reason.
        deposit = {chain.account: chain.name for chain in value}
        hot: dict[int, str] = {}
        for chain in value:
            if chain.hot_account in deposit:
                raise ValueError(f"the hot_account of {chain.name} ({chain.hot_account}) is the deposit account of "
                                 f"{deposit[chain.hot_account]}")
            if chain.hot_account in hot:
                raise ValueError(f"{hot[chain.hot_account]} and {chain.name} share hot_account {chain.hot_account}")
            hot[chain.hot_account] = chain.name
        return value

    @field_validator("signer_cold_wallets")
    @classmethod
    def _cold_wallets_are_addresses(cls, value: dict[str, str]) -> dict[str, str]:
        return {chain: checksum_address(address, f"cold wallet of {chain}") for chain, address in value.items()}

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        if value is not None and value.split("://", 1)[0] not in BROKER_SCHEMES:
            raise ValueError(f"VIRTUOZ_BROKER_URL must start with {', '.join(f'{s}://' for s in BROKER_SCHEMES)}")
        return value

    @field_validator("metrics_allowlist", "trusted_proxies")
    @classmethod
    def _networks_parse(cls, value: list[str]) -> list[str]:
        for network in value:
            ip_network(network, strict=False)
        return value

    @field_validator("operator_public_keys")
    @classmethod
    def _operator_keys_parse(cls, value: dict[str, str]) -> dict[str, str]:
        for key_id, public_key in value.items():
            try:
                load_public_key(public_key)
            except ValueError:
                raise ValueError(f"operator key {key_id!r} is not a base64url Ed25519 public key") from None
        return value

    @cached_property
    def metrics_networks(self) -> list[IPv4Network | IPv6Network]:
        return [ip_network(network, strict=False) for network in self.metrics_allowlist]

    @property
    def trusted_proxy_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        # Not a cached_property: model_copy would carry a stale cache into a copy with other proxies.
        return _parse_networks(tuple(self.trusted_proxies))

    @property
    def registration_limit(self) -> int:
        if self.registrations_per_hour is not None:
            return self.registrations_per_hour
        return REGISTRATIONS_PER_HOUR if self.is_production else LOCAL_REGISTRATIONS_PER_HOUR

    @property
    def address_cooling_off(self) -> timedelta:
        if self.address_cooling_off_hours is not None:
            return timedelta(hours=self.address_cooling_off_hours)
        return timedelta(hours=ADDRESS_COOLING_OFF_HOURS if self.is_production else 0)

    def _webhook(self, name: str) -> float:
        value = getattr(self, f"webhook_{name}")
        if value is not None:
            return float(value)
        return (WEBHOOK_PRODUCTION if self.is_production else WEBHOOK_LOCAL)[name]

    @property
    def webhook_retry_base(self) -> timedelta:
        return timedelta(seconds=self._webhook("retry_base_seconds"))

    @property
    def webhook_retry_max(self) -> timedelta:
        return timedelta(seconds=self._webhook("retry_max_seconds"))

    @property
    def webhook_retry_window(self) -> timedelta:
        return timedelta(hours=self._webhook("retry_window_hours"))

    @property
    def webhook_disable_after(self) -> timedelta:
        return timedelta(hours=self._webhook("disable_after_hours"))

    @property
    def webhook_private_allowed(self) -> bool:
        if self.webhook_allow_private is not None:
            return self.webhook_allow_private
        return not self.is_production

    @property
    def secure_cookies(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.env is Environment.PRODUCTION

    @property
    def public_base_url(self) -> str:
        """Where browsers reach the platform, the base of the links in emails: VIRTUOZ_PUBLIC_URL (the
        integrator's front end, which serves /verify-email), else the API's own address — on the devnet
        the API serves a minimal /verify-email page itself."""
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    def check(self, process: str | None = None) -> None:
        """Refuse configurations that must never run; called by every process at start.

        ``process`` "signer": the signer reads its queue (the broker) and its own files only, never
        PostgreSQL nor the platform's secret key, so it is not asked for them (its host must hold
        nothing it does not use).
        """
        if self.signer_test_pause_file is not None and self.env != "test":
            raise SettingsError("VIRTUOZ_SIGNER_TEST_PAUSE_FILE is for the test suite only")
        if not self.is_production:
            return
        problems = []
        if process == "signer":
            if not (self.broker_url or self.redis_url):
                problems.append("VIRTUOZ_BROKER_URL and VIRTUOZ_REDIS_URL are unset: the signer takes its requests "
                                "from one of them")
        else:
            if not self.redis_url:
                problems.append("VIRTUOZ_REDIS_URL is unset (embedded Redis is for devnet and tests only)")
            problems.extend(self._platform_problems())
        if problems:
            if "env" not in self.model_fields_set:
                problems.append("VIRTUOZ_ENV is unset, which means production: to run locally set VIRTUOZ_ENV=devnet "
                                "(or test), as `make devnet` and `make test` do")
            raise SettingsError("refusing to start in production: " + "; ".join(problems))

    def _platform_problems(self) -> list[str]:
        """What production refuses in every process that reads the database or holds the secret key."""
        problems = []
        if not self.database_url:
            problems.append("VIRTUOZ_DATABASE_URL is unset (embedded PostgreSQL is for devnet and tests only)")
        secret = self.secret_key.get_secret_value()
        if secret == DEFAULT_SECRET_KEY:
            problems.append("VIRTUOZ_SECRET_KEY is the public default")
        elif len(secret) < MIN_SECRET_LENGTH:
            problems.append(f"VIRTUOZ_SECRET_KEY is shorter than {MIN_SECRET_LENGTH} characters")
        if self.jwt_algorithm == "EdDSA" and not (self.jwt_private_key and self.jwt_public_key):
            problems.append("VIRTUOZ_JWT_ALGORITHM=EdDSA needs VIRTUOZ_JWT_PRIVATE_KEY and VIRTUOZ_JWT_PUBLIC_KEY")
        if self.sandbox_credit:
            problems.append("VIRTUOZ_SANDBOX_CREDIT is set: play money is for devnet and tests only")
        if not self.secure_cookies:
            problems.append("VIRTUOZ_COOKIE_SECURE=false: production cookies must be Secure")
        if self.webhook_allow_private:
            problems.append("VIRTUOZ_WEBHOOK_ALLOW_PRIVATE=true: webhooks to private addresses are for devnet and tests only")
        # Finality is a decision about money at risk, never a default someone did not notice.
        unset = [chain.name for chain in self.chains if "finality" not in chain.model_fields_set]
        if unset:
            problems.append(f"VIRTUOZ_CHAINS: set finality (\"confirmations\" or \"finalized\") for {', '.join(unset)}")
        return problems

    def require_database_url(self) -> str:
        if not self.database_url:
            raise SettingsError(
                "VIRTUOZ_DATABASE_URL is unset: run the process under `virtuoz devnet`, or point it at PostgreSQL"
            )
        return self.database_url

    def require_broker_url(self) -> str:
        """Dramatiq's broker: VIRTUOZ_BROKER_URL, else Redis."""
        return self.broker_url or self.require_redis_url()

    def require_redis_url(self) -> str:
        if not self.redis_url:
            raise SettingsError("VIRTUOZ_REDIS_URL is unset: run the process under `virtuoz devnet`, or point it at Redis")
        return self.redis_url


def load_settings(process: str | None = None, **overrides: object) -> Settings:
    """Read the environment, checked for ``process`` (``Settings.check``); keyword overrides win
    (tests build settings this way)."""
    settings = Settings(**overrides)  # type: ignore[arg-type]
    settings.check(process)
    return settings
