"""Secrets at rest (TOTP seeds): AES-256-GCM under a key derived from the platform secret.

Each purpose gets its own HKDF-derived key, so one ciphertext can never be replayed as another
kind of secret; the purpose is also bound as associated data.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


def derive_key(secret: str, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"virtuoz:{purpose}".encode()).derive(
        secret.encode()
    )


def seal(secret: str, purpose: str, plaintext: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(derive_key(secret, purpose)).encrypt(nonce, plaintext, purpose.encode())


def unseal(secret: str, purpose: str, sealed: bytes) -> bytes:
    nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    return AESGCM(derive_key(secret, purpose)).decrypt(nonce, ciphertext, purpose.encode())


def token_digest(token: str) -> str:
    """SHA-256 of a high-entropy random token (refresh tokens, recovery codes): stored, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_digest(left: str, right: str) -> bool:
    return hmac.compare_digest(left, right)
