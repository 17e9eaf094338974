"""`virtuoz signer init` from settings: paths, passphrase source, refusals."""

from __future__ import annotations

import argparse

from core.settings import ChainSettings, Environment, Settings
from signer.cli import add_commands, run_init
from signer.keystore import DEVNET_PASSPHRASE, keystore_path, unlock_keystore

CHAINS = [
    ChainSettings(name="ethereum", chain_id=1, rpc_url="http://127.0.0.1:1", native="ETH", account=0),
    ChainSettings(name="polygon", chain_id=137, rpc_url="http://127.0.0.1:1", native="POL", account=1),
]


def make_settings(tmp_path, **overrides) -> Settings:
    return Settings(**{"env": "test", "data_dir": tmp_path, "chains": CHAINS, "log_json": False, **overrides})


def test_paths_default_to_the_data_dir(tmp_path) -> None:
    settings = make_settings(tmp_path)
    assert settings.signer_keystore_dir == tmp_path / "signer"
    assert settings.xpub_file == tmp_path / "xpubs.json"
    assert settings.signer_public_key_file == tmp_path / "signer-key.pub"


def test_init_uses_the_configured_passphrase_and_paths(tmp_path, capsys) -> None:
    settings = make_settings(tmp_path, signer_passphrase="a long enough passphrase")
    assert run_init(settings) == 0
    assert len(unlock_keystore(settings.signer_keystore_dir, "a long enough passphrase")) == 64
    assert settings.xpub_file.exists()
    output = capsys.readouterr()
    assert "a long enough passphrase" not in output.out + output.err

    assert run_init(settings) == 1  # never a second seed over the first
    assert "keystore_exists" in capsys.readouterr().err


def test_init_without_a_passphrase_or_terminal_refuses(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert run_init(make_settings(tmp_path)) == 1
    assert "VIRTUOZ_SIGNER_PASSPHRASE" in capsys.readouterr().err
    assert not keystore_path(tmp_path / "signer").exists()


def test_production_refuses_the_devnet_passphrase(tmp_path, capsys) -> None:
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(DEVNET_PASSPHRASE)
    passphrase_file.chmod(0o600)
    # model_copy skips validation (Settings.check would refuse this test's embedded defaults first).
    settings = make_settings(tmp_path).model_copy(update={"env": Environment.PRODUCTION,
                                                          "signer_passphrase_file": passphrase_file})
    assert run_init(settings) == 1
    assert "devnet" in capsys.readouterr().err
    assert not keystore_path(tmp_path / "signer").exists()


def test_the_command_is_registered_as_signer_init() -> None:
    root = argparse.ArgumentParser()
    add_commands(root.add_subparsers(dest="command"))
    args = root.parse_args(["signer", "init"])
    assert args.run is run_init and args.process == "signer"

