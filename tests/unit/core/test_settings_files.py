"""Secret settings read from files, VIRTUOZ_<NAME>_FILE (compose and Kubernetes mount secrets as files)."""

from __future__ import annotations

import pytest

from core.settings import SECRET_FILE_SETTINGS, Settings, SettingsError

STRONG = "s" * 48


@pytest.fixture(autouse=True)
def no_secret_in_environment(monkeypatch):
    # The suite's own environment must not decide what these tests read.
    for name in SECRET_FILE_SETTINGS:
        monkeypatch.delenv(f"VIRTUOZ_{name.upper()}", raising=False)
        monkeypatch.delenv(f"VIRTUOZ_{name.upper()}_FILE", raising=False)


def secret_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_secrets_come_from_files_without_their_final_newline(monkeypatch, tmp_path):
    monkeypatch.setenv("VIRTUOZ_SECRET_KEY_FILE", str(secret_file(tmp_path, "secret-key", STRONG + "\n")))
    monkeypatch.setenv("VIRTUOZ_DATABASE_URL_FILE",
                       str(secret_file(tmp_path, "database-url", "postgresql://virtuoz:pw@db:5432/virtuoz\r\n")))
    monkeypatch.setenv("VIRTUOZ_REDIS_URL_FILE", str(secret_file(tmp_path, "redis-url", "redis://:pw@redis:6379/0")))
    settings = Settings(env="production")
    assert settings.secret_key.get_secret_value() == STRONG
    assert settings.database_url == "postgresql://virtuoz:pw@db:5432/virtuoz"
    assert settings.redis_url == "redis://:pw@redis:6379/0"
    settings.check()  # a production configuration made of files alone starts


def test_a_pem_keeps_its_inner_lines(monkeypatch, tmp_path):
    pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----\n"
    monkeypatch.setenv("VIRTUOZ_JWT_PRIVATE_KEY_FILE", str(secret_file(tmp_path, "jwt.pem", pem)))
    assert Settings(env="test").jwt_private_key.get_secret_value() == pem.rstrip("\n")


def test_a_value_and_its_file_together_are_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("VIRTUOZ_SECRET_KEY", STRONG)
    monkeypatch.setenv("VIRTUOZ_SECRET_KEY_FILE", str(secret_file(tmp_path, "secret-key", STRONG)))
    with pytest.raises(SettingsError, match="VIRTUOZ_SECRET_KEY and VIRTUOZ_SECRET_KEY_FILE are both set"):
        Settings(env="test")


def test_a_missing_file_is_refused_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("VIRTUOZ_SMTP_PASSWORD_FILE", str(tmp_path / "absent"))
    with pytest.raises(SettingsError, match="VIRTUOZ_SMTP_PASSWORD_FILE: cannot read"):
        Settings(env="test")


def test_an_empty_file_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("VIRTUOZ_INGEST_HMAC_SECRET_FILE", str(secret_file(tmp_path, "hmac", "\n")))
    with pytest.raises(SettingsError, match="is empty"):
        Settings(env="test")


def test_keyword_overrides_win_over_files(monkeypatch, tmp_path):
    monkeypatch.setenv("VIRTUOZ_DATABASE_URL_FILE", str(secret_file(tmp_path, "database-url", "postgresql://file/db")))
    assert Settings(env="test", database_url="postgresql://override/db").database_url == "postgresql://override/db"


def test_the_chains_come_from_a_json_file(monkeypatch, tmp_path):
    # RPC provider URLs carry API keys: the chains are a secret setting too.
    chains = ('[{"name": "ethereum", "chain_id": 1, "rpc_url": "https://rpc.example/v3/KEY", "native": "ETH",'
              ' "finality": "finalized"}]\n')
    monkeypatch.setenv("VIRTUOZ_CHAINS_FILE", str(secret_file(tmp_path, "chains.json", chains)))
    [chain] = Settings(env="test").chains
    assert (chain.name, chain.rpc_url, chain.finality) == ("ethereum", "https://rpc.example/v3/KEY", "finalized")


def test_a_chains_file_that_is_not_json_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("VIRTUOZ_CHAINS_FILE", str(secret_file(tmp_path, "chains.json", "ethereum=https://rpc")))
    with pytest.raises(SettingsError, match="VIRTUOZ_CHAINS_FILE: .* is not JSON"):
        Settings(env="test")
