from __future__ import annotations

import argparse
import base64
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli.operator import add_commands, keygen, sign
from core.errors import AppError
from core.signing import (
    InvalidSignature,
    InvalidSignedPayload,
    SignedPayloadExpired,
    SignedPayloadLifetimeTooLong,
    SignedPayloadNotYetValid,
    UnknownOperatorKey,
    canonical_json,
    generate_keypair,
    load_public_key,
    nonce_ttl,
    sign_payload,
    verify_envelope,
)

NOW = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
PRIVATE_PEM, PUBLIC_KEY = generate_keypair()
KEYS = {"ops-1": PUBLIC_KEY}


def make_envelope(payload: dict | None = None, **options) -> dict:
    return sign_payload(PRIVATE_PEM, "ops-1", payload if payload is not None else {"policy": {"min_confirmations": 3}},
                        now=options.pop("now", NOW), **options)


def refusal(envelope: object, keys: dict[str, str] = KEYS, **options) -> AppError:
    with pytest.raises(AppError) as caught:
        verify_envelope(envelope, keys, now=options.pop("now", NOW), **options)  # type: ignore[arg-type]
    return caught.value


# --- round trip ---------------------------------------------------------------------------------


def test_round_trip_returns_the_payload_and_its_envelope_fields():
    envelope = make_envelope({"locale": "fr", "catalogue": {"hello": "bonjour"}})
    verified = verify_envelope(envelope, KEYS, now=NOW + timedelta(minutes=1))
    assert verified.key_id == "ops-1"
    assert verified.payload == {"locale": "fr", "catalogue": {"hello": "bonjour"}}
    assert verified.signed_payload == envelope["payload"]
    assert verified.issued_at == NOW
    assert verified.expires_at == NOW + timedelta(minutes=10)
    assert len(verified.nonce) >= 16
    assert envelope["payload"]["issued_at"] == "2026-11-26T14:00:00Z"


def test_sign_keeps_fields_the_caller_set_and_does_not_mutate_the_payload():
    payload = {"a": 1, "issued_at": "2026-11-26T13:59:00Z", "nonce": "n" * 20}
    envelope = make_envelope(payload, lifetime=timedelta(minutes=5))
    assert payload == {"a": 1, "issued_at": "2026-11-26T13:59:00Z", "nonce": "n" * 20}
    assert envelope["payload"]["expires_at"] == "2026-11-26T14:04:00Z"
    assert verify_envelope(envelope, KEYS, now=NOW).nonce == "n" * 20


def test_each_signature_gets_a_fresh_nonce():
    assert make_envelope()["payload"]["nonce"] != make_envelope()["payload"]["nonce"]


def test_public_key_is_accepted_with_or_without_padding():
    assert "=" not in PUBLIC_KEY
    verify_envelope(make_envelope(), {"ops-1": PUBLIC_KEY + "="}, now=NOW)
    envelope = make_envelope()
    envelope["signature"] += "=="
    verify_envelope(envelope, KEYS, now=NOW)


def test_a_bad_configured_key_is_a_value_error_that_does_not_echo_it():
    with pytest.raises(ValueError) as caught:
        load_public_key("c2VjcmV0")
    assert "c2VjcmV0" not in str(caught.value)


# --- canonical JSON -----------------------------------------------------------------------------


def test_key_order_and_whitespace_in_transit_do_not_matter():
    envelope = make_envelope({"z": [1, {"b": 2, "a": "é"}], "a": None})

    def reverse_keys(value):
        if isinstance(value, dict):
            return {key: reverse_keys(value[key]) for key in reversed(list(value))}
        if isinstance(value, list):
            return [reverse_keys(item) for item in value]
        return value

    transit = json.dumps(reverse_keys(envelope), indent=4, ensure_ascii=True)
    assert transit != json.dumps(envelope)
    verified = verify_envelope(json.loads(transit), KEYS, now=NOW)
    assert verified.payload == {"z": [1, {"b": 2, "a": "é"}], "a": None}


def test_canonical_json_is_sorted_compact_utf8():
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


# --- refusals: shape (422) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda e: e.pop("signature"), id="missing-signature"),
        pytest.param(lambda e: e.pop("key_id"), id="missing-key-id"),
        pytest.param(lambda e: e.update(extra=1), id="extra-field"),
        pytest.param(lambda e: e.update(payload=[1, 2]), id="non-dict-payload"),
        pytest.param(lambda e: e.update(key_id=7), id="non-string-key-id"),
        pytest.param(lambda e: e.update(signature=None), id="non-string-signature"),
        pytest.param(lambda e: e.update(signature="!!not*base64!!"), id="garbage-base64"),
        pytest.param(lambda e: e.update(signature="A"), id="impossible-base64-length"),
        pytest.param(lambda e: e.update(signature=e["signature"].replace("-", "+").replace("_", "/") + "+/"),
                     id="standard-not-url-base64"),
        pytest.param(lambda e: e.update(signature=e["signature"][:20]), id="short-signature"),
        pytest.param(lambda e: e["payload"].pop("nonce"), id="missing-nonce"),
        pytest.param(lambda e: e["payload"].update(nonce="short"), id="short-nonce"),
        pytest.param(lambda e: e["payload"].update(nonce=1234567890123456789), id="non-string-nonce"),
        pytest.param(lambda e: e["payload"].pop("issued_at"), id="missing-issued-at"),
        pytest.param(lambda e: e["payload"].update(expires_at="tomorrow"), id="unparsable-time"),
        pytest.param(lambda e: e["payload"].update(issued_at="2026-11-26T14:00:00"), id="time-without-zone"),
        pytest.param(lambda e: e["payload"].update(issued_at="2026-13-26T14:00:00Z"), id="impossible-date"),
        pytest.param(lambda e: e["payload"].update(text="\ud800"), id="lone-surrogate"),
    ],
)
def test_malformed_envelope_is_invalid_signed_payload(edit):
    envelope = make_envelope()
    edit(envelope)
    error = refusal(envelope)
    assert isinstance(error, InvalidSignedPayload)
    assert (error.status, error.code) == (422, "invalid_signed_payload")


def test_non_dict_envelope_is_invalid_signed_payload():
    assert refusal(["payload"]).code == "invalid_signed_payload"


def test_expiry_before_issue_is_invalid_signed_payload():
    envelope = make_envelope({"expires_at": "2026-11-26T13:00:00Z"})
    assert refusal(envelope).code == "invalid_signed_payload"


def test_too_long_lifetime_is_refused():
    envelope = make_envelope(lifetime=timedelta(hours=2))
    error = refusal(envelope)
    assert isinstance(error, SignedPayloadLifetimeTooLong)
    assert (error.status, error.code) == (422, "signed_payload_lifetime_too_long")
    verify_envelope(envelope, KEYS, now=NOW, max_lifetime=timedelta(hours=3))


# --- refusals: authenticity (401) ---------------------------------------------------------------


def test_unknown_key_id_is_refused():
    error = refusal(make_envelope(), {"someone-else": PUBLIC_KEY})
    assert isinstance(error, UnknownOperatorKey)
    assert (error.status, error.code) == (401, "unknown_operator_key")


def test_tampered_payload_value_is_an_invalid_signature():
    envelope = make_envelope({"policy": {"min_confirmations": 3}})
    envelope["payload"]["policy"]["min_confirmations"] = 0
    error = refusal(envelope)
    assert isinstance(error, InvalidSignature)
    assert (error.status, error.code) == (401, "invalid_signature")


def test_tampered_signature_is_an_invalid_signature():
    envelope = make_envelope()
    raw = bytearray(base64.urlsafe_b64decode(envelope["signature"] + "=="))
    raw[0] ^= 1
    envelope["signature"] = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    assert refusal(envelope).code == "invalid_signature"


def test_a_signature_by_another_key_is_invalid():
    other_private, _ = generate_keypair()
    envelope = sign_payload(other_private, "ops-1", {"a": 1}, now=NOW)
    assert refusal(envelope).code == "invalid_signature"


def test_time_fields_are_only_judged_after_the_signature():
    envelope = make_envelope(now=NOW - timedelta(days=1))
    envelope["payload"]["tampered"] = True
    assert refusal(envelope).code == "invalid_signature"


# --- refusals: validity window (401) ------------------------------------------------------------


def test_expired_payload_is_refused_after_the_skew():
    envelope = make_envelope()  # expires at NOW + 10 min
    verify_envelope(envelope, KEYS, now=NOW + timedelta(minutes=11))  # within 2 min skew
    error = refusal(envelope, now=NOW + timedelta(minutes=12, seconds=1))
    assert isinstance(error, SignedPayloadExpired)
    assert (error.status, error.code) == (401, "signed_payload_expired")


def test_payload_issued_in_the_future_is_refused_beyond_the_skew():
    envelope = make_envelope(now=NOW + timedelta(minutes=3))
    error = refusal(envelope)
    assert isinstance(error, SignedPayloadNotYetValid)
    assert (error.status, error.code) == (401, "signed_payload_not_yet_valid")
    verify_envelope(make_envelope(now=NOW + timedelta(minutes=1)), KEYS, now=NOW)


def test_refusal_messages_never_echo_key_material():
    envelope = make_envelope()
    envelope["payload"]["x"] = 1
    for error in (refusal(envelope), refusal(make_envelope(), {"other": PUBLIC_KEY})):
        rendered = f"{error.message} {error.details}"
        assert PUBLIC_KEY not in rendered and envelope["signature"] not in rendered


# --- replay window ------------------------------------------------------------------------------


def test_nonce_ttl_covers_the_rest_of_the_window_plus_skew():
    verified = verify_envelope(make_envelope(), KEYS, now=NOW)
    assert nonce_ttl(verified, NOW) == 12 * 60
    assert nonce_ttl(verified, NOW + timedelta(minutes=11, seconds=59, milliseconds=500)) == 1
    assert nonce_ttl(verified, NOW + timedelta(hours=1)) == 1


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_keygen_then_sign_round_trips(tmp_path: Path, capsys):
    assert keygen(tmp_path / "keys", "ops-2") == 0
    printed = capsys.readouterr().out
    settings_line = next(line for line in printed.splitlines() if line.startswith("VIRTUOZ_OPERATOR_PUBLIC_KEYS="))
    public_keys = json.loads(settings_line.split("=", 1)[1].strip("'"))
    assert list(public_keys) == ["ops-2"]
    assert public_keys["ops-2"] in printed

    payload_file = tmp_path / "policy.json"
    payload_file.write_text(json.dumps({"policy": {"min_confirmations": 6}}))
    assert sign(payload_file, tmp_path / "keys" / "ops-2.pem", "ops-2", lifetime_minutes=5) == 0
    envelope = json.loads(capsys.readouterr().out)
    verified = verify_envelope(envelope, public_keys)
    assert verified.payload == {"policy": {"min_confirmations": 6}}
    assert verified.expires_at - verified.issued_at == timedelta(minutes=5)


def test_cli_keygen_writes_the_private_key_with_mode_0600(tmp_path: Path, capsys):
    assert keygen(tmp_path, "ops-1") == 0
    key_file = tmp_path / "ops-1.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert "PRIVATE KEY" not in capsys.readouterr().out


def test_cli_keygen_refuses_to_overwrite(tmp_path: Path, capsys):
    existing = tmp_path / "ops-1.pem"
    existing.write_text("precious")
    assert keygen(tmp_path, "ops-1") == 1
    assert existing.read_text() == "precious"
    assert "already exists" in capsys.readouterr().err


def test_cli_keygen_refuses_a_key_id_that_is_a_path(tmp_path: Path, capsys):
    assert keygen(tmp_path, "../escape") == 1
    assert not (tmp_path.parent / "escape.pem").exists()


def test_cli_sign_refuses_a_non_object_payload_and_a_bad_key(tmp_path: Path, capsys):
    key = tmp_path / "ops.pem"
    key.write_text(PRIVATE_PEM)
    array_file = tmp_path / "list.json"
    array_file.write_text("[1, 2]")
    assert sign(array_file, key, "ops") == 1
    object_file = tmp_path / "ok.json"
    object_file.write_text("{}")
    not_a_key = tmp_path / "bad.pem"
    not_a_key.write_text("secret-looking garbage")
    assert sign(object_file, not_a_key, "ops") == 1
    errors = capsys.readouterr().err
    assert "JSON object" in errors and "not an unencrypted Ed25519" in errors
    assert "secret-looking garbage" not in errors


def test_add_commands_registers_runnable_operator_commands(tmp_path: Path, capsys):
    root = argparse.ArgumentParser(prog="virtuoz")
    add_commands(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(["operator", "keygen", "--out", str(tmp_path), "--key-id", "ops-3"])
    assert args.process == "operator"
    assert args.run(None, args) == 0
    payload_file = tmp_path / "p.json"
    payload_file.write_text('{"a": 1}')
    args = root.parse_args(["operator", "sign", str(payload_file), "--key", str(tmp_path / "ops-3.pem"),
                            "--key-id", "ops-3", "--lifetime-minutes", "3"])
    capsys.readouterr()
    assert (args.process, args.run(None, args)) == ("operator", 0)
    assert json.loads(capsys.readouterr().out)["key_id"] == "ops-3"
