"""`virtuoz signer`: run the signing daemon; `virtuoz signer init`: create the seed and export the xpubs.

The passphrase comes from ``VIRTUOZ_SIGNER_PASSPHRASE`` or, on a terminal, a prompt (asked
twice). Nothing secret is ever printed: the output names the files and the master fingerprint.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from core.settings import Settings
from signer.keystore import DEVNET_PASSPHRASE, KeystoreError, init_keystore

# Production passphrases stretch through scrypt, but a short one still falls to a dictionary.
MIN_PRODUCTION_PASSPHRASE = 12


class PassphraseUnavailable(KeystoreError):
    code = "passphrase_unavailable"


def add_commands(subparsers: Any) -> None:
    """Register `signer` (the daemon), `signer run` (the same) and `signer init` on the `virtuoz` parsers."""
    signer = subparsers.add_parser("signer", help="the isolated signer: run the daemon (default), or init its keystore")
    signer.set_defaults(run=run_daemon, process="signer")
    actions = signer.add_subparsers(dest="signer_command", metavar="ACTION")
    run = actions.add_parser("run", help="run the signing daemon (VIRTUOZ_SIGNER_PASSPHRASE unlocks the keystore)")
    run.set_defaults(run=run_daemon, process="signer")
    init = actions.add_parser("init", help="create the encrypted seed and export the account xpubs (once)")
    init.set_defaults(run=run_init, process="signer")


def run_daemon(settings: Settings, args: argparse.Namespace | None = None) -> int:
    """Unlock the keystore with VIRTUOZ_SIGNER_PASSPHRASE and sign until SIGTERM."""
    from signer.daemon import run_signer  # the daemon's imports (Dramatiq, Redis) stay out of `signer init`

    try:
        return run_signer(settings)
    except KeystoreError as error:
        print(f"virtuoz signer: {error} [{error.code}]", file=sys.stderr)
        return 1


def run_init(settings: Settings, args: argparse.Namespace | None = None) -> int:
    """Create the keystore and the xpub file from ``settings``; 0 on success, 1 on refusal."""
    try:
        passphrase = _passphrase(settings)
        init_keystore(settings.signer_keystore_dir, settings.xpub_file, passphrase,  # type: ignore[arg-type]
                      [(chain.name, chain.account) for chain in settings.chains])
    except KeystoreError as error:
        print(f"virtuoz signer init: {error} [{error.code}]", file=sys.stderr)
        return 1
    print(f"keystore written to {settings.signer_keystore_dir} (encrypted; back it up with its passphrase)")
    print(f"account xpubs written to {settings.xpub_file}: " + ", ".join(
        f"{chain.name} (account {chain.account})" for chain in settings.chains))
    return 0


def _passphrase(settings: Settings) -> str:
    if settings.signer_passphrase is not None:
        passphrase = settings.signer_passphrase.get_secret_value()
    elif sys.stdin.isatty():
        passphrase = getpass.getpass("keystore passphrase: ")
        if getpass.getpass("again: ") != passphrase:
            raise PassphraseUnavailable("the two passphrases differ")
    else:
        raise PassphraseUnavailable("set VIRTUOZ_SIGNER_PASSPHRASE or run on a terminal to be prompted")
    if settings.is_production and (passphrase == DEVNET_PASSPHRASE or len(passphrase) < MIN_PRODUCTION_PASSPHRASE):
        raise PassphraseUnavailable(
            f"production needs a passphrase of at least {MIN_PRODUCTION_PASSPHRASE} characters, not the devnet one"
        )
    return passphrase
