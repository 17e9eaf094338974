"""Where the keystore passphrase comes from, and what is refused.

- ``VIRTUOZ_SIGNER_PASSPHRASE`` only in devnet and test: an environment variable is inherited by
  every child, shown by ``/proc/<pid>/environ`` and ``docker inspect``, and copied into crash
  reports. Production refuses it.
- ``VIRTUOZ_SIGNER_PASSPHRASE_FILE``: a file only its owner can read (a tmpfs secret mount), or a
  descriptor the supervisor passes (``/dev/fd/3``). One final newline is not part of it.
- a prompt on a terminal, for `virtuoz signer init` and the other operator commands.

Production also refuses the public devnet passphrase and, when a keystore is made, a short one.
Messages name the source, never the passphrase.
"""

from __future__ import annotations

import getpass
import os
import stat
import sys

from core.settings import Settings
from signer.keystore import DEVNET_PASSPHRASE, KeystoreError

# Production passphrases stretch through scrypt, but a short one still falls to a dictionary.
MIN_PRODUCTION_PASSPHRASE = 12
MAX_PASSPHRASE_BYTES = 4096


class PassphraseUnavailable(KeystoreError):
    code = "passphrase_unavailable"


def read_passphrase(settings: Settings, *, prompt: bool = False, confirm: bool = False,
                    new_keystore: bool = False) -> str:
    """The passphrase from the settings' one source (or a prompt on a terminal when ``prompt``)."""
    if settings.signer_passphrase is not None and settings.signer_passphrase_file is not None:
        raise PassphraseUnavailable("set one of VIRTUOZ_SIGNER_PASSPHRASE and VIRTUOZ_SIGNER_PASSPHRASE_FILE, not both")
    if settings.signer_passphrase is not None:
        if settings.is_production:
            raise PassphraseUnavailable("VIRTUOZ_SIGNER_PASSPHRASE is for devnet and test only: give the passphrase "
                                        "in a file only the signer can read, VIRTUOZ_SIGNER_PASSPHRASE_FILE")
        passphrase = settings.signer_passphrase.get_secret_value()
    elif settings.signer_passphrase_file is not None:
        passphrase = _from_file(settings)
    elif prompt and sys.stdin.isatty():
        passphrase = getpass.getpass("keystore passphrase: ")
        if confirm and getpass.getpass("again: ") != passphrase:
            raise PassphraseUnavailable("the two passphrases differ")
    else:
        raise PassphraseUnavailable("set VIRTUOZ_SIGNER_PASSPHRASE_FILE (devnet and test: VIRTUOZ_SIGNER_PASSPHRASE)"
                                    + (" or run on a terminal to be prompted" if prompt else ""))
    if not passphrase:
        raise PassphraseUnavailable("the passphrase is empty")
    if settings.is_production:
        if passphrase == DEVNET_PASSPHRASE:
            raise PassphraseUnavailable("production refuses the public devnet passphrase")
        if new_keystore and len(passphrase) < MIN_PRODUCTION_PASSPHRASE:
            raise PassphraseUnavailable(f"production needs a passphrase of at least {MIN_PRODUCTION_PASSPHRASE} "
                                        "characters")
    return passphrase


def _from_file(settings: Settings) -> str:
    path = settings.signer_passphrase_file
    assert path is not None
    try:
        # No O_NOFOLLOW: /dev/fd/N is a symbolic link by nature.
        descriptor = os.open(path, os.O_RDONLY | os.O_NOCTTY)
    except OSError as error:
        raise PassphraseUnavailable(f"cannot open the passphrase file {path}: {error.strerror}") from None
    try:
        status = os.fstat(descriptor)
        if stat.S_ISREG(status.st_mode) and status.st_mode & 0o077:
            raise PassphraseUnavailable(f"the passphrase file {path} is readable by others (mode "
                                        f"{stat.S_IMODE(status.st_mode):o}); make it 0600 or 0400")
        raw = b""
        while len(raw) <= MAX_PASSPHRASE_BYTES and (chunk := os.read(descriptor, MAX_PASSPHRASE_BYTES + 1)):
            raw += chunk  # a pipe may deliver it in pieces
    finally:
        os.close(descriptor)
    if len(raw) > MAX_PASSPHRASE_BYTES:
        raise PassphraseUnavailable(f"the passphrase file {path} is longer than {MAX_PASSPHRASE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PassphraseUnavailable(f"the passphrase file {path} is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r")
