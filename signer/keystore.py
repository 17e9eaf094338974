"""The signer's keystore: one BIP39 seed, encrypted at rest, and the public xpubs made from it.

``init_keystore`` generates a 24-word mnemonic, turns it into the BIP39 seed, and keeps only the
seed, sealed with AES-256-GCM under a key stretched from the passphrase by scrypt. The file holds
its format version and KDF parameters in the clear, bound to the ciphertext as associated data,
so a reader knows how to open it and an edited header fails like a wrong passphrase.

The seed is never logged, printed or written in plaintext; the mnemonic is shown once, at init, to
an operator who asks for it (``show_mnemonic``) for an offline backup, and never kept. The other
backup is the keystore file plus its passphrase. What leaves the signer goes to separate public
files (``signer.exports``): the xpub file (deposit xpubs and hot wallet addresses, signed by the
signer key) and the signer key's public half.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import unicodedata
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bip_utils import Bip32Secp256k1, Bip39MnemonicGenerator, Bip39SeedGenerator, Bip39WordsNum
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from core.time import rfc3339, utcnow
from signer.derivation import ChainKeys, account_path, signer_key
from signer.exports import dump, public_key_text, write_exports, xpub_document

KEYSTORE_FILE = "keystore.json"
KIND = "virtuoz-signer-seed"
VERSION = 1

# scrypt with r=8: memory is 128·n·r bytes, so 2**17 is 128 MiB and about half a second. Files
# written with less than MIN are refused; more than MAX would let a file make us allocate gigabytes.
DEFAULT_SCRYPT_N = 2**17
MIN_SCRYPT_N = 2**15
MAX_SCRYPT_N = 2**20
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
NONCE_BYTES = 12
KEY_BYTES = 32

# Public, so only for devnet: `virtuoz signer init` refuses it in production.
DEVNET_PASSPHRASE = "virtuoz-devnet-passphrase"


class KeystoreError(Exception):
    """A keystore operation that cannot proceed; the message never contains key material."""

    code = "keystore_error"


class KeystoreExists(KeystoreError):
    code = "keystore_exists"


class KeystoreMissing(KeystoreError):
    code = "keystore_missing"


class KeystoreCorrupt(KeystoreError):
    code = "keystore_corrupt"


class WrongPassphrase(KeystoreError):
    code = "wrong_passphrase"


class InvalidKeystoreRequest(KeystoreError):
    code = "invalid_keystore_request"


def keystore_path(keystore_dir: Path) -> Path:
    return keystore_dir / KEYSTORE_FILE


def default_public_key_file(xpub_file: Path) -> Path:
    return xpub_file.with_name("signer-key.pub")


def init_keystore(
    keystore_dir: Path,
    xpub_file: Path,
    passphrase: str,
    chains: Sequence[ChainKeys],
    *,
    public_key_file: Path | None = None,
    scrypt_n: int = DEFAULT_SCRYPT_N,
    show_mnemonic: bool = False,
) -> str | None:
    """Create the seed, seal it in ``keystore_dir``, export the xpub file (signed) and the signer key's
    public half (``public_key_file``, default beside the xpub file). Returns the 24-word mnemonic when
    ``show_mnemonic`` (for the operator's offline backup, shown once), else None.

    Refuses to overwrite an existing keystore or export: a new seed would orphan every address
    handed out from the old one.
    """
    _check_request(passphrase, chains, scrypt_n)
    public_key_file = public_key_file or default_public_key_file(xpub_file)
    sealed = keystore_path(keystore_dir)
    for existing in (sealed, xpub_file, public_key_file):
        if existing.exists():
            raise KeystoreExists(f"{existing} already exists; refusing to overwrite it (it belongs to an existing "
                                 "seed)")

    mnemonic = Bip39MnemonicGenerator().FromWordsNumber(Bip39WordsNum.WORDS_NUM_24)
    seed = Bip39SeedGenerator(mnemonic).Generate()
    fingerprint = Bip32Secp256k1.FromSeed(seed).FingerPrint().ToBytes().hex()
    keystore_document = _seal(seed, passphrase, scrypt_n, fingerprint)

    keystore_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keystore_dir, 0o700)
    _write_new(sealed, _dump(keystore_document), 0o600)
    try:
        for path, content in ((public_key_file, (public_key_text(signer_key(seed)) + "\n").encode()),
                              (xpub_file, dump(xpub_document(seed, chains)))):
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_new(path, content, 0o644)
    except BaseException:
        # Nothing (or not all) was published, so no address can hold funds under this seed yet: undo.
        for path in (sealed, public_key_file):
            path.unlink(missing_ok=True)
        raise
    return mnemonic.ToStr() if show_mnemonic else None


def reexport(keystore_dir: Path, xpub_file: Path, public_key_file: Path, passphrase: str,
             chains: Sequence[ChainKeys]) -> None:
    """Write the public files again from an existing keystore: after an upgrade of their format (the
    xpub file of a keystore made before the hot wallet moved), or for a chain added to the settings.

    The deposit xpub of a chain already in the xpub file must come out the same: a changed account
    would hand customers addresses of another account, and orphan those already handed out.
    """
    _check_request(passphrase, chains, MIN_SCRYPT_N)
    seed = unlock_keystore(keystore_dir, passphrase)
    new = xpub_document(seed, chains)
    try:
        old = json.loads(xpub_file.read_text(encoding="utf-8")).get("chains", {})
    except FileNotFoundError:
        old = {}
    except (ValueError, AttributeError):
        raise KeystoreCorrupt(f"{xpub_file} is not an xpub file; move it away to export anew") from None
    for name, entry in old.items():
        if name in new["chains"] and isinstance(entry, dict) and entry.get("xpub") != new["chains"][name]["xpub"]:
            raise InvalidKeystoreRequest(f"chain {name!r}: the settings' account gives another xpub than {xpub_file} "
                                         "holds; refusing to change where its deposits go")
    write_exports(xpub_file, public_key_file, seed, chains)


def unlock_keystore(keystore_dir: Path, passphrase: str) -> bytes:
    """The 64-byte BIP39 seed; ``WrongPassphrase`` when the passphrase (or the file) is wrong."""
    sealed = keystore_path(keystore_dir)
    try:
        raw = sealed.read_bytes()
    except FileNotFoundError:
        raise KeystoreMissing(f"no keystore at {sealed}: run `virtuoz signer init` first") from None
    document = _parse(raw, sealed)
    kdf, cipher = document["kdf"], document["cipher"]
    key = _stretch(passphrase, _b64(kdf["salt"], sealed), kdf["n"], kdf["r"], kdf["p"])
    try:
        return AESGCM(key).decrypt(_b64(cipher["nonce"], sealed), _b64(document["ciphertext"], sealed),
                                   _associated_data(document))
    except InvalidTag:
        raise WrongPassphrase("the passphrase does not open this keystore (or the file was altered)") from None


def _check_request(passphrase: str, chains: Sequence[ChainKeys], scrypt_n: int) -> None:
    if not passphrase:
        raise InvalidKeystoreRequest("an empty passphrase would leave the seed unprotected")
    if not MIN_SCRYPT_N <= scrypt_n <= MAX_SCRYPT_N or scrypt_n & (scrypt_n - 1):
        raise InvalidKeystoreRequest(f"scrypt n must be a power of two from {MIN_SCRYPT_N} to {MAX_SCRYPT_N}")
    if not chains:
        raise InvalidKeystoreRequest("no chains configured: there is no account to export an xpub for")
    names = [chain.name for chain in chains]
    if len(set(names)) != len(names):
        raise InvalidKeystoreRequest(f"a chain is listed twice: {', '.join(names)}")
    by_account: dict[int, str] = {}
    for chain in chains:
        for account, role in ((chain.account, "deposit"), (chain.hot_account, "hot wallet")):
            account_path(account)  # raises on an account out of range
            if account in by_account:
                # The same account on two chains gives the same addresses on both (a coin sent on the
                # wrong chain would land on another customer's deposit address); a hot account that is
                # a deposit account is a hot wallet under an exported xpub.
                raise InvalidKeystoreRequest(
                    f"{by_account[account]} and {chain.name!r} ({role}) share BIP44 account {account}; give each "
                    "its own")
            by_account[account] = f"{chain.name!r} ({role})"


def _seal(seed: bytes, passphrase: str, scrypt_n: int, fingerprint: str) -> dict[str, Any]:
    salt = secrets.token_bytes(SALT_BYTES)
    nonce = secrets.token_bytes(NONCE_BYTES)
    document: dict[str, Any] = {
        "kind": KIND,
        "version": VERSION,
        "master_fingerprint": fingerprint,
        "created_at": rfc3339(utcnow()),
        "kdf": {"name": "scrypt", "n": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _text(salt)},
        "cipher": {"name": "aes-256-gcm", "nonce": _text(nonce)},
    }
    key = _stretch(passphrase, salt, scrypt_n, SCRYPT_R, SCRYPT_P)
    document["ciphertext"] = _text(AESGCM(key).encrypt(nonce, seed, _associated_data(document)))
    return document


def _associated_data(document: dict[str, Any]) -> bytes:
    header = {name: document[name] for name in ("kind", "version", "master_fingerprint", "kdf", "cipher")}
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _stretch(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # NFKD as BIP39 does: the same passphrase typed on another keyboard or OS opens the file.
    secret = unicodedata.normalize("NFKD", passphrase).encode()
    return Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(secret)


def _parse(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        document = json.loads(raw)
        kdf, cipher = document["kdf"], document["cipher"]
        well_formed = (
            document["kind"] == KIND
            and isinstance(document["ciphertext"], str)
            and kdf["name"] == "scrypt"
            and cipher["name"] == "aes-256-gcm"
            and all(isinstance(kdf[name], int) for name in ("n", "r", "p"))
        )
    except (ValueError, TypeError, KeyError):
        well_formed = False
    if not well_formed:
        raise KeystoreCorrupt(f"{path} is not a VirtuOZ signer keystore")
    if document["version"] != VERSION:
        raise KeystoreCorrupt(f"{path} has keystore version {document['version']!r}; this signer reads {VERSION}")
    if not MIN_SCRYPT_N <= kdf["n"] <= MAX_SCRYPT_N or not (1 <= kdf["r"] <= 32 and 1 <= kdf["p"] <= 16):
        raise KeystoreCorrupt(f"{path} has scrypt parameters outside the accepted range")
    return document


def _write_new(path: Path, content: bytes, mode: int) -> None:
    """Write ``content`` to ``path`` only if it does not exist, never leaving a partial file there."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as output:
            os.fchmod(output.fileno(), mode)  # the umask can only narrow the mode; make it exact
            output.write(content)
            output.flush()
            os.fsync(output.fileno())
        try:
            os.link(temporary, path)  # atomic, and fails if another init won the race
        except FileExistsError:
            raise KeystoreExists(f"{path} already exists; refusing to overwrite it") from None
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _dump(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def _text(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _b64(value: Any, path: Path) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError):
        raise KeystoreCorrupt(f"{path} is not a VirtuOZ signer keystore") from None
