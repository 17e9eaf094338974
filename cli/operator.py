"""`virtuoz operator keygen|sign`: make an operator key and sign payloads for the reload endpoints.

Runs on the operator's machine; the private key never leaves it, the API only holds the public
half (VIRTUOZ_OPERATOR_PUBLIC_KEYS). ``sign`` prints only the envelope on stdout so it can be
piped: ``virtuoz operator sign policy.json --key ops.pem --key-id ops | curl -d @- ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm

from core.errors import AppError
from core.signing import generate_keypair, sign_payload

# The key id becomes a file name: no path separators, no leading dot.
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def keygen(out_dir: Path, key_id: str) -> int:
    if not _KEY_ID.fullmatch(key_id):
        return _refuse("key id must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    out_dir.mkdir(parents=True, exist_ok=True)
    key_path = out_dir / f"{key_id}.pem"
    private_pem, public_key = generate_keypair()
    try:
        # O_EXCL: refusing to overwrite is atomic, and 0600 is set at creation, so the key is
        # never readable by others, not even between create and chmod.
        descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _refuse(f"{key_path} already exists; not overwriting an operator key (choose another --key-id)")
    with os.fdopen(descriptor, "w", encoding="ascii") as key_file:
        os.fchmod(key_file.fileno(), 0o600)  # the umask can only narrow the mode; make it exact
        key_file.write(private_pem)
    print(f"private key written to {key_path} (keep it offline; it signs operator payloads)")
    print(f"public key: {public_key}")
    print("add to the API settings (merge with any existing keys):")
    print(f"VIRTUOZ_OPERATOR_PUBLIC_KEYS='{json.dumps({key_id: public_key})}'")
    return 0


def sign(file: Path, key_path: Path, key_id: str, lifetime_minutes: int = 10) -> int:
    if lifetime_minutes < 1:
        return _refuse("--lifetime-minutes must be at least 1")
    not_a_key = f"{key_path} is not an unencrypted Ed25519 private key in PEM format"
    try:
        payload = json.loads(file.read_text(encoding="utf-8"))
    except OSError as error:
        return _refuse(f"cannot read {file}: {error.strerror}")
    except ValueError as error:  # also UnicodeDecodeError
        return _refuse(f"{file} is not valid JSON: {error}")
    if not isinstance(payload, dict):
        return _refuse(f"{file} must contain a JSON object")
    try:
        private_pem = key_path.read_text(encoding="ascii")
    except OSError as error:
        return _refuse(f"cannot read {key_path}: {error.strerror}")
    except ValueError:
        return _refuse(not_a_key)
    try:
        envelope = sign_payload(private_pem, key_id, payload, lifetime=timedelta(minutes=lifetime_minutes))
    except AppError as error:  # a malformed issued_at the operator set by hand
        return _refuse(f"{file}: {error.message}")
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # Name the file, never echo its content: it may be someone's private key.
        return _refuse(not_a_key)
    print(json.dumps(envelope, ensure_ascii=False))
    return 0


def add_commands(subparsers: Any) -> None:
    """Register `operator keygen` and `operator sign` on the `virtuoz` sub-command parsers."""
    operator = subparsers.add_parser("operator", help="operator keys and signed payloads (i18n, readiness policy)")
    actions = operator.add_subparsers(dest="operator_command", required=True, metavar="ACTION")

    keygen_parser = actions.add_parser("keygen", help="create an Ed25519 operator key pair")
    keygen_parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory for <key-id>.pem")
    keygen_parser.add_argument("--key-id", required=True, help="name the API knows this key by")
    keygen_parser.set_defaults(run=_run_keygen, process="operator")

    sign_parser = actions.add_parser("sign", help="sign a JSON payload file; prints the envelope on stdout")
    sign_parser.add_argument("file", type=Path, metavar="FILE", help="JSON object to sign")
    sign_parser.add_argument("--key", required=True, type=Path, metavar="PATH", help="private key from keygen")
    sign_parser.add_argument("--key-id", required=True, help="name the API knows this key by")
    sign_parser.add_argument("--lifetime-minutes", type=int, default=10, metavar="N",
                             help="minutes the envelope stays valid (default 10; the API accepts at most 60)")
    sign_parser.set_defaults(run=_run_sign, process="operator")


def _run_keygen(settings: object, args: argparse.Namespace) -> int:
    return keygen(args.out, args.key_id)


def _run_sign(settings: object, args: argparse.Namespace) -> int:
    return sign(args.file, args.key, args.key_id, args.lifetime_minutes)


def _refuse(message: str) -> int:
    print(f"virtuoz operator: {message}", file=sys.stderr)
    return 1
