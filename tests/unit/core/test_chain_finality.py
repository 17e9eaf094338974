"""A chain's finality rule: explicit in production, "confirmations" by default in devnet and test."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from core.settings import ChainSettings, Settings, SettingsError

PRODUCTION = {"env": "production", "database_url": "postgresql://db/virtuoz", "redis_url": "redis://cache:6379/0",
              "secret_key": SecretStr("x" * 48)}
CHAIN = {"chain_id": 1, "rpc_url": "https://node.example", "native": "ETH"}


def test_production_refuses_a_chain_without_an_explicit_finality() -> None:
    settings = Settings(**PRODUCTION, chains=[{"name": "ethereum", **CHAIN, "finality": "finalized"},
                                              {"name": "polygon", **CHAIN, "account": 1}])
    with pytest.raises(SettingsError, match="set finality") as refused:
        settings.check()
    assert "polygon" in str(refused.value) and "ethereum" not in str(refused.value)

    Settings(**PRODUCTION, chains=[{"name": "ethereum", **CHAIN, "finality": "finalized"},
                                   {"name": "polygon", **CHAIN, "account": 1, "finality": "confirmations"}]).check()


@pytest.mark.parametrize("env", ["devnet", "test"])
def test_devnet_and_test_count_confirmations_by_default(env: str) -> None:
    settings = Settings(env=env, chains=[{"name": "ethereum", **CHAIN}])
    settings.check()
    assert settings.chain("ethereum").finality == "confirmations"


def test_finality_is_one_of_two_rules() -> None:
    with pytest.raises(ValidationError):
        ChainSettings(name="ethereum", **CHAIN, finality="safe")
