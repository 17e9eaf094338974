"""The hot wallets' levels and the cold wallets, as settings: refused at start when they cannot be meant."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import ChainSettings, HotWalletLevels, Settings

COLD = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"


def test_levels_are_ordered_plain_decimals_read_in_the_assets_minor_units() -> None:
    levels = HotWalletLevels(hot_floor="2", hot_target="20.5", hot_ceiling="50")
    assert levels.minor(18) == (2 * 10**18, 205 * 10**17, 50 * 10**18)
    assert levels.minor(1) == (20, 205, 500)
    with pytest.raises(ValueError, match="more than 0 decimals"):
        levels.minor(0)
    for wrong in ({"hot_floor": "30", "hot_target": "20", "hot_ceiling": "50"},
                  {"hot_floor": "2", "hot_target": "60", "hot_ceiling": "50"},
                  {"hot_floor": "1e3", "hot_target": "2000", "hot_ceiling": "5000"},
                  {"hot_floor": "-1", "hot_target": "2", "hot_ceiling": "5"}):
        with pytest.raises(ValidationError):
            HotWalletLevels(**wrong)


def test_the_devnet_defaults_sit_below_what_the_devnet_funds_its_hot_wallets_with() -> None:
    defaults = Settings(env="test").treasury_hot_levels
    # The devnet keeps 1000 of each native coin and 1,000,000 USDC in each hot wallet.
    for chain, native in (("ethereum", "ETH"), ("polygon", "POL")):
        assert defaults[chain][native].minor(18)[2] < 1000 * 10**18
        assert defaults[chain]["USDC"].minor(6)[2] < 1_000_000 * 10**6


def test_cold_wallets_are_addresses_kept_in_eip55() -> None:
    chain = ChainSettings(name="ethereum", chain_id=1, rpc_url="http://127.0.0.1:1", native="ETH",
                          cold_wallet=COLD.lower())
    assert chain.cold_wallet == COLD
    assert Settings(env="test", signer_cold_wallets={"ethereum": COLD.upper().replace("0X", "0x")}
                    ).signer_cold_wallets == {"ethereum": COLD}
    for wrong in ("0x1234", COLD.replace("a0Ee", "A0ee"), "not an address"):
        with pytest.raises(ValidationError):
            ChainSettings(name="ethereum", chain_id=1, rpc_url="http://127.0.0.1:1", native="ETH", cold_wallet=wrong)
        with pytest.raises(ValidationError):
            Settings(env="test", signer_cold_wallets={"ethereum": wrong})
