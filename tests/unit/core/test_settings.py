from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import SecretStr

from core.settings import DEFAULT_SECRET_KEY, Settings, SettingsError

STRONG = "x" * 48
PRODUCTION_OK = dict(env="production", database_url="postgresql://db/virtuoz", redis_url="redis://cache:6379/0",
                     secret_key=SecretStr(STRONG))


def test_settings_come_from_prefixed_environment(monkeypatch):
    monkeypatch.setenv("VIRTUOZ_API_PORT", "9999")
    monkeypatch.setenv("VIRTUOZ_CORS_ORIGINS", '["https://app.example"]')
    monkeypatch.setenv("VIRTUOZ_READINESS", '{"workers": [], "timeout_seconds": 1.5}')
    settings = Settings()
    assert settings.api_port == 9999
    assert settings.cors_origins == ["https://app.example"]
    assert settings.readiness.workers == [] and settings.readiness.timeout_seconds == 1.5


def test_devnet_defaults_are_accepted():
    Settings(env="devnet").check()
    assert Settings(env="devnet").secure_cookies is False
    assert Settings(env="production", **{k: v for k, v in PRODUCTION_OK.items() if k != "env"}).secure_cookies


def test_production_accepts_a_real_configuration():
    Settings(**PRODUCTION_OK).check()


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"database_url": None}, "VIRTUOZ_DATABASE_URL is unset"),
        ({"redis_url": None}, "VIRTUOZ_REDIS_URL is unset"),
        ({"secret_key": SecretStr(DEFAULT_SECRET_KEY)}, "public default"),
        ({"secret_key": SecretStr("short-secret")}, "shorter than 32"),
        ({"cookie_secure": False}, "must be Secure"),
        ({"webhook_allow_private": True}, "WEBHOOK_ALLOW_PRIVATE"),
    ],
)
def test_production_refuses_unsafe_configuration(override, reason):
    with pytest.raises(SettingsError, match=reason):
        Settings(**{**PRODUCTION_OK, **override}).check()


def test_invalid_metrics_network_is_refused():
    with pytest.raises(ValueError):
        Settings(metrics_allowlist=["not-a-network"])


def test_cli_refuses_production_on_defaults_with_a_clear_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cli", "api"],
        env={"VIRTUOZ_ENV": "production", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "refusing to start in production" in result.stderr
    assert "VIRTUOZ_DATABASE_URL is unset" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("env", ["devnet", "production"])
def test_the_signer_pause_point_is_refused_outside_tests(env, tmp_path):
    settings = Settings(env=env, signer_test_pause_file=tmp_path / "paused", database_url="postgresql://db/x",
                        redis_url="redis://cache/0", secret_key=SecretStr("k" * 40))
    with pytest.raises(SettingsError, match="VIRTUOZ_SIGNER_TEST_PAUSE_FILE"):
        settings.check()
    Settings(env="test", signer_test_pause_file=tmp_path / "paused").check()


def test_unset_env_refuses_default_secret(monkeypatch, tmp_path):
    # Fail closed: a process started without VIRTUOZ_ENV is a production process, so the public
    # default secret (and every other devnet shortcut) is refused, with a hint at the variable.
    monkeypatch.delenv("VIRTUOZ_ENV", raising=False)
    settings = Settings(database_url="postgresql://db/virtuoz", redis_url="redis://cache:6379/0")
    assert settings.is_production and settings.secure_cookies
    with pytest.raises(SettingsError, match="VIRTUOZ_SECRET_KEY is the public default") as refused:
        settings.check()
    assert "VIRTUOZ_ENV is unset" in str(refused.value)
    Settings(**PRODUCTION_OK).check()  # a real production configuration still starts

    result = subprocess.run(
        [sys.executable, "-m", "cli", "api"],
        env={"PATH": "/usr/bin:/bin", "VIRTUOZ_DATABASE_URL": "postgresql://db/virtuoz",
             "VIRTUOZ_REDIS_URL": "redis://cache:6379/0"},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "refusing to start in production" in result.stderr
    assert "VIRTUOZ_SECRET_KEY is the public default" in result.stderr
    assert "VIRTUOZ_ENV=devnet" in result.stderr  # the message says how to run locally
    assert "Traceback" not in result.stderr


def test_the_production_signer_needs_its_broker_only(tmp_path):
    # The signer never opens PostgreSQL nor uses the platform's secret key: asking for them would
    # put the database password and the secret key on the one host that must hold nothing else.
    signer_only = Settings(env="production", redis_url="redis://cache:6379/0")
    signer_only.check("signer")
    with pytest.raises(SettingsError, match="VIRTUOZ_DATABASE_URL is unset"):
        signer_only.check("api")
    with pytest.raises(SettingsError, match="the signer takes its requests from one of them"):
        Settings(env="production").check("signer")

    result = subprocess.run(
        [sys.executable, "-m", "cli", "signer"],
        env={"PATH": "/usr/bin:/bin", "VIRTUOZ_ENV": "production", "VIRTUOZ_REDIS_URL": "redis://cache:6379/0"},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    # Past the settings check, it stops at what a signer does need: its keystore's passphrase.
    assert result.returncode != 0
    assert "refusing to start in production" not in result.stderr
    assert "PASSPHRASE" in result.stderr and "Traceback" not in result.stderr


def test_the_broker_is_redis_unless_an_amqp_url_is_given():
    assert Settings(env="test", redis_url="redis://cache:6379/0").require_broker_url() == "redis://cache:6379/0"
    rabbit = Settings(env="test", redis_url="redis://cache:6379/0", broker_url="amqp://mq:5672/%2F")
    assert rabbit.require_broker_url() == "amqp://mq:5672/%2F"
    with pytest.raises(ValueError, match="VIRTUOZ_BROKER_URL"):
        Settings(env="test", broker_url="http://mq:5672/")
    # Redis stays required beside RabbitMQ (pub/sub, throttles, in-flight claims); the signer needs
    # only the channel its requests come in on.
    production = {**PRODUCTION_OK, "redis_url": None, "broker_url": "amqp://mq:5672/%2F"}
    with pytest.raises(SettingsError, match="VIRTUOZ_REDIS_URL is unset"):
        Settings(**production).check("api")
    Settings(env="production", broker_url="amqp://mq:5672/%2F").check("signer")
