"""The custody worker's Ed25519 request key: it authorizes every sign request it sends.

The signer holds only the public half, so a message on the ``signer`` queue that this key did not
sign is refused, whoever could write to Redis. The private key is read from settings (inline PEM
or a file, mode 0600) by the custody worker only; it is not key material of any wallet.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.settings import Settings, SettingsError
from core.sign_requests import authorization_message
from core.signing import b64url_encode, generate_keypair


def request_key(settings: Settings) -> Ed25519PrivateKey:
    if settings.custody_request_key is not None:
        return _parse(settings.custody_request_key.get_secret_value())
    path = settings.custody_request_key_file
    try:
        return _parse(Path(path).read_text(encoding="ascii"))  # type: ignore[arg-type]
    except OSError:
        raise SettingsError(f"no custody request key: set VIRTUOZ_CUSTODY_REQUEST_KEY or write {path} "
                            "(the devnet generates one)") from None


@lru_cache(maxsize=4)
def _parse(pem: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except (ValueError, TypeError):
        raise SettingsError("the custody request key is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SettingsError("the custody request key must be an Ed25519 key")
    return key


def authorize(key: Ed25519PrivateKey, withdrawal_id: str, unsigned_tx: str) -> str:
    """base64url of the Ed25519 signature over the request (``core.sign_requests``)."""
    return b64url_encode(key.sign(authorization_message(withdrawal_id, unsigned_tx)))


def ensure_request_key_pair(private_file: Path, public_file: Path) -> str:
    """Generate the pair once (devnet); returns the public half. Existing files are kept."""
    if not private_file.exists():
        private_pem, public = generate_keypair()
        private_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(private_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as output:
            output.write(private_pem)
        public_file.write_text(public + "\n")
    elif not public_file.exists():
        public = b64url_encode(_parse(private_file.read_text(encoding="ascii")).public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw))
        public_file.write_text(public + "\n")
    return public_file.read_text(encoding="ascii").strip()
