"""`virtuoz signer`: run the signing daemon; `signer init`: create the seed and the public exports;
`signer export`: write the public exports again from an existing keystore.

The passphrase comes from ``VIRTUOZ_SIGNER_PASSPHRASE_FILE``, from ``VIRTUOZ_SIGNER_PASSPHRASE`` in
devnet and test only, or (init and export) from a prompt on a terminal (``signer.passphrase``).
Nothing secret is printed, except the mnemonic, once, at `init --show-mnemonic`, on a terminal.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core.settings import Settings
from signer.derivation import ChainKeys
from signer.keystore import KeystoreError, init_keystore, reexport
from signer.passphrase import PassphraseUnavailable, read_passphrase


def add_commands(subparsers: Any) -> None:
    """Register `signer` (the daemon), `signer run` (the same), `signer init` and `signer export`."""
    signer = subparsers.add_parser("signer", help="the isolated signer: run the daemon (default), or init its keystore")
    signer.set_defaults(run=run_daemon, process="signer")
    actions = signer.add_subparsers(dest="signer_command", metavar="ACTION")
    run = actions.add_parser("run", help="run the signing daemon (VIRTUOZ_SIGNER_PASSPHRASE_FILE unlocks the keystore)")
    run.set_defaults(run=run_daemon, process="signer")
    init = actions.add_parser("init", help="create the encrypted seed, the xpub file and the signer public key (once)")
    init.add_argument("--show-mnemonic", action="store_true",
                      help="print the 24 words once, on this terminal, for an offline backup of the seed")
    init.set_defaults(run=run_init, process="signer")
    export = actions.add_parser("export", help="write the xpub file and the signer public key again from the keystore "
                                               "(after an upgrade, or for a new chain)")
    export.set_defaults(run=run_export, process="signer")


def run_daemon(settings: Settings, args: argparse.Namespace | None = None) -> int:
    """Unlock the keystore and sign until SIGTERM."""
    from signer.daemon import run_signer  # the daemon's imports (Dramatiq, Redis) stay out of `signer init`

    try:
        return run_signer(settings)
    except KeystoreError as error:
        print(f"virtuoz signer: {error} [{error.code}]", file=sys.stderr)
        return 1


def run_init(settings: Settings, args: argparse.Namespace | None = None) -> int:
    """Create the keystore and the public exports from ``settings``; 0 on success, 1 on refusal."""
    show_mnemonic = bool(getattr(args, "show_mnemonic", False))
    try:
        if show_mnemonic and not sys.stdout.isatty():
            # Whatever reads a pipe may keep it (a log collector, a CI job): the words are the whole seed.
            raise PassphraseUnavailable("--show-mnemonic prints the words only to a terminal, never to a pipe or a "
                                        "file; run it on the signer host's console")
        passphrase = read_passphrase(settings, prompt=True, confirm=True, new_keystore=True)
        mnemonic = init_keystore(settings.signer_keystore_dir, settings.xpub_file,  # type: ignore[arg-type]
                                 passphrase, [ChainKeys.of(chain) for chain in settings.chains],
                                 public_key_file=settings.signer_public_key_file, show_mnemonic=show_mnemonic)
    except KeystoreError as error:
        print(f"virtuoz signer init: {error} [{error.code}]", file=sys.stderr)
        return 1
    if mnemonic is not None:
        print("Write these 24 words down, offline, now; they are shown this once and restore every key:\n")
        print(f"    {mnemonic}\n")
    _print_exports(settings, "keystore written to {keystore} (encrypted; back it up with its passphrase)")
    return 0


def run_export(settings: Settings, args: argparse.Namespace | None = None) -> int:
    try:
        passphrase = read_passphrase(settings, prompt=True)
        reexport(settings.signer_keystore_dir, settings.xpub_file,  # type: ignore[arg-type]
                 settings.signer_public_key_file, passphrase,  # type: ignore[arg-type]
                 [ChainKeys.of(chain) for chain in settings.chains])
    except KeystoreError as error:
        print(f"virtuoz signer export: {error} [{error.code}]", file=sys.stderr)
        return 1
    _print_exports(settings, "exported again from the keystore in {keystore}")
    return 0


def _print_exports(settings: Settings, first_line: str) -> None:
    print(first_line.format(keystore=settings.signer_keystore_dir))
    print(f"xpub file (deposit xpubs and hot wallets, signed) written to {settings.xpub_file}: " + ", ".join(
        f"{chain.name} (account {chain.account}, hot account {chain.hot_account})" for chain in settings.chains))
    print(f"signer public key written to {settings.signer_public_key_file}: copy it into the configuration of the "
          "custody, allocator and compliance workers (VIRTUOZ_SIGNER_PUBLIC_KEY_FILE)")
