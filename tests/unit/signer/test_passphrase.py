"""Where the signer's passphrase may come from, and `signer init --show-mnemonic`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pytest
from bip_utils import Bip39Languages, Bip39MnemonicValidator, Bip39SeedGenerator
from bip_utils.bip.bip39.bip39_mnemonic_utils import Bip39WordsListGetter
from pydantic import SecretStr

from core.settings import ChainSettings, Environment, Settings
from signer.cli import run_init
from signer.keystore import DEVNET_PASSPHRASE, keystore_path, unlock_keystore
from signer.passphrase import PassphraseUnavailable, read_passphrase

CHAINS = [ChainSettings(name="ethereum", chain_id=1, rpc_url="http://127.0.0.1:1", native="ETH", account=0)]
GOOD = "a long enough passphrase"


def make_settings(tmp_path, env: Environment = Environment.TEST, **fields) -> Settings:
    # model_copy skips validation: Settings.check would refuse production's embedded defaults first.
    return Settings(data_dir=tmp_path, chains=CHAINS, log_json=False).model_copy(update={"env": env, **fields})


def passphrase_file(tmp_path, text: str, mode: int = 0o600):
    path = tmp_path / "passphrase"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def init_args(show_mnemonic: bool = False) -> argparse.Namespace:
    return argparse.Namespace(show_mnemonic=show_mnemonic)


def test_the_passphrase_variable_is_refused_in_production(tmp_path, capsys) -> None:
    settings = make_settings(tmp_path, Environment.PRODUCTION, signer_passphrase=SecretStr(GOOD))
    with pytest.raises(PassphraseUnavailable, match="VIRTUOZ_SIGNER_PASSPHRASE_FILE") as refused:
        read_passphrase(settings)
    assert GOOD not in str(refused.value)
    assert run_init(settings, init_args()) == 1
    assert "VIRTUOZ_SIGNER_PASSPHRASE_FILE" in capsys.readouterr().err
    assert not keystore_path(tmp_path / "signer").exists()


@pytest.mark.parametrize("env", [Environment.DEVNET, Environment.TEST])
def test_the_passphrase_variable_still_serves_devnet_and_tests(tmp_path, env) -> None:
    assert read_passphrase(make_settings(tmp_path, env, signer_passphrase=SecretStr(GOOD))) == GOOD


def test_the_passphrase_file_is_read_without_its_final_newline(tmp_path, capsys) -> None:
    settings = make_settings(tmp_path, Environment.PRODUCTION,
                             signer_passphrase_file=passphrase_file(tmp_path, GOOD + "\n"))
    assert read_passphrase(settings) == GOOD
    assert run_init(settings.model_copy(update={"env": Environment.TEST}), init_args()) == 0
    assert len(unlock_keystore(tmp_path / "signer", GOOD)) == 64
    assert GOOD not in capsys.readouterr().out


def test_a_passphrase_from_a_file_descriptor(tmp_path) -> None:
    reader, writer = os.pipe()
    os.write(writer, GOOD.encode() + b"\n")
    os.close(writer)
    try:
        settings = make_settings(tmp_path, Environment.PRODUCTION, signer_passphrase_file=Path(f"/dev/fd/{reader}"))
        assert read_passphrase(settings) == GOOD
    finally:
        os.close(reader)


def test_production_refuses_the_devnet_passphrase_from_a_file(tmp_path) -> None:
    settings = make_settings(tmp_path, Environment.PRODUCTION,
                             signer_passphrase_file=passphrase_file(tmp_path, DEVNET_PASSPHRASE))
    with pytest.raises(PassphraseUnavailable, match="devnet"):
        read_passphrase(settings)


@pytest.mark.parametrize(("text", "mode", "match"), [
    (GOOD, 0o644, "readable by others"),
    ("", 0o600, "empty"),
])
def test_an_unsafe_or_empty_passphrase_file_is_refused(tmp_path, text, mode, match) -> None:
    settings = make_settings(tmp_path, signer_passphrase_file=passphrase_file(tmp_path, text, mode))
    with pytest.raises(PassphraseUnavailable, match=match):
        read_passphrase(settings)


def test_a_missing_passphrase_file_is_refused_without_prompting(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    settings = make_settings(tmp_path, signer_passphrase_file=tmp_path / "nowhere")
    with pytest.raises(PassphraseUnavailable, match="nowhere"):
        read_passphrase(settings, prompt=True)


def test_both_sources_at_once_are_refused(tmp_path) -> None:
    settings = make_settings(tmp_path, signer_passphrase=SecretStr(GOOD),
                             signer_passphrase_file=passphrase_file(tmp_path, GOOD))
    with pytest.raises(PassphraseUnavailable, match="one of"):
        read_passphrase(settings)


def test_show_mnemonic_prints_the_backup_once_to_a_terminal(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    settings = make_settings(tmp_path, signer_passphrase_file=passphrase_file(tmp_path, GOOD))
    assert run_init(settings, init_args(show_mnemonic=True)) == 0
    output = capsys.readouterr().out
    lines = [line.strip() for line in output.splitlines()]
    mnemonic = next(line for line in lines if len(line.split()) == 24)
    assert Bip39MnemonicValidator().IsValid(mnemonic)
    # The words are the seed: restoring them gives the keystore's seed back (empty BIP39 passphrase).
    assert Bip39SeedGenerator(mnemonic).Generate("") == unlock_keystore(tmp_path / "signer", GOOD)
    assert output.count(mnemonic) == 1
    assert mnemonic not in (tmp_path / "signer" / "keystore.json").read_text()


def test_without_show_mnemonic_no_words_are_printed(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    settings = make_settings(tmp_path, signer_passphrase_file=passphrase_file(tmp_path, GOOD))
    assert run_init(settings, init_args()) == 0
    words = set(Bip39WordsListGetter().GetByLanguage(Bip39Languages.ENGLISH).m_idx_to_words)
    run = longest = 0
    for token in capsys.readouterr().out.split():
        run = run + 1 if token in words else 0
        longest = max(longest, run)
    assert longest < 12  # a mnemonic is 12 or 24 words in a row


def test_show_mnemonic_refuses_a_pipe_before_making_a_seed(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    settings = make_settings(tmp_path, signer_passphrase_file=passphrase_file(tmp_path, GOOD))
    assert run_init(settings, init_args(show_mnemonic=True)) == 1
    assert "terminal" in capsys.readouterr().err
    assert not keystore_path(tmp_path / "signer").exists()
