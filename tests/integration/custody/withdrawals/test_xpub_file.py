"""The xpub file is believed only with the signer key's signature: by the allocator, the custody
worker and compliance alike, whatever chains it lists (none included).

The file tells the allocator where customers' money goes (deposit addresses) and the custody
worker which wallet pays withdrawals: whoever could swap it would receive the deposits.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from bip_utils import Bip39SeedGenerator

from compliance.reporting import onchain
from core.db import unit_of_work
from core.settings import ChainSettings, Settings
from core.sign_requests import load_signer_public_key
from custody.addresses.actors import refill
from custody.hd import XpubError, load_xpubs, signed_xpubs
from custody.withdrawals import pipeline
from jobs.context import using_settings
from signer.derivation import ChainKeys
from signer.exports import write_exports
from tests.integration.custody.conftest import account_xpub, write_xpub_file

ATTACKER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


@pytest.fixture
def chain() -> ChainSettings:
    return ChainSettings(name=f"xpub{uuid.uuid4().hex[:8]}", chain_id=31337, rpc_url="http://127.0.0.1:1",
                         native="ETH", account=5)


@pytest.fixture
def genuine(settings: Settings, chain: ChainSettings) -> Settings:
    """The signer's own export for ``chain``, and the configuration's public key to check it with."""
    write_xpub_file(settings, [chain])
    return settings.model_copy(update={"chains": [chain]})


def unsigned_legacy(path: Path, chain: ChainSettings) -> None:
    path.write_text(json.dumps({"chains": {chain.name: {"account": chain.account,
                                                        "xpub": account_xpub(chain.account)}}}))


def unsigned_empty(path: Path, chain: ChainSettings) -> None:
    path.write_text(json.dumps({"chains": {}}))


def signed_by_another_signer(path: Path, chain: ChainSettings) -> None:
    stranger = Bip39SeedGenerator("abandon " * 11 + "about").Generate("")
    write_exports(path, path.with_name("stranger-key.pub"), stranger, [ChainKeys.of(chain)])


def tampered(path: Path, chain: ChainSettings) -> None:
    document = json.loads(path.read_text())
    document["chains"][chain.name]["hot_wallet"] = ATTACKER
    path.write_text(json.dumps(document))


def tampered_empty(path: Path, chain: ChainSettings) -> None:
    document = json.loads(path.read_text())
    document["chains"] = {}  # "nothing to check here" is a claim too
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("forge", [unsigned_legacy, unsigned_empty, signed_by_another_signer, tampered,
                                   tampered_empty])
async def test_unsigned_xpub_file_refused(genuine: Settings, chain: ChainSettings, db, forge) -> None:
    assert signed_xpubs(genuine)[chain.name].hot_wallet  # the genuine export verifies
    xpub_file = genuine.xpub_file
    assert xpub_file is not None and genuine.signer_public_key_file is not None
    forge(xpub_file, chain)
    public_key = load_signer_public_key(genuine.signer_public_key_file)

    with pytest.raises(XpubError, match="signer key"):
        load_xpubs(xpub_file, public_key)
    # The custody worker: no hot wallet, so no withdrawal is signed from a wallet the file names.
    with pytest.raises(XpubError, match="signer key"):
        pipeline.hot_wallet(genuine, chain)
    # The allocator: no deposit address is derived.
    async with unit_of_work(db) as session:
        with using_settings(genuine), pytest.raises(XpubError, match="signer key"):
            await refill.fn(session, chain.name)
    # Compliance: the reconciliation refuses to report on wallets the file names.
    async with db() as session:
        with pytest.raises(onchain.XpubFileRefused, match="signer key"):
            await onchain.holdings(session, [chain], xpub_file, genuine.signer_public_key_file,
                                   datetime.now(UTC))
