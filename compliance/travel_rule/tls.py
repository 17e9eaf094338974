"""Mutual TLS between VASPs: a certificate authority, one certificate per VASP identity, contexts.

TRP peers authenticate each other by certificate, both ways. In production each identity's
certificate and key come from the operator (signed by a CA the counterparties trust) and sit in
the PKI directory as ``<identity>.pem`` / ``<identity>.key`` beside ``ca.pem``. The devnet makes
its own CA at first start (``ensure_devnet_pki``) and signs a certificate for every configured
identity, so two identities on one devnet talk over real mTLS.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "ca"
VALIDITY = datetime.timedelta(days=825)


@dataclass(frozen=True)
class Identity:
    """The files of one identity: its certificate chain, its private key and the CA to trust."""

    cert: Path
    key: Path
    ca: Path


def identity_files(pki_dir: Path, name: str) -> Identity:
    return Identity(pki_dir / f"{name}.pem", pki_dir / f"{name}.key", pki_dir / f"{CA_NAME}.pem")


def server_context(identity: Identity) -> ssl.SSLContext:
    """Presents the identity's certificate and requires one from the client, signed by the CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(identity.cert, identity.key)
    context.load_verify_locations(identity.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(identity: Identity) -> ssl.SSLContext:
    """Verifies the server against the CA (and its host name) and presents the identity's certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(identity.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(identity.cert, identity.key)
    return context


def peer_name(certificate: dict | None) -> str | None:
    """The common name of a verified peer certificate (``SSLObject.getpeercert()``)."""
    for entry in (certificate or {}).get("subject", ()):
        for key, value in entry:
            if key == "commonName":
                return value
    return None


def fingerprint(der: bytes) -> str:
    """SHA-256 of a certificate's DER bytes, in hex: what pins a transfer to one certificate. A name
    is not enough: any VASP our CA signs could present a certificate with a name it chose."""
    return hashlib.sha256(der).hexdigest()


def fingerprint_of_file(path: Path) -> str:
    """The fingerprint of the (first) certificate in a PEM file."""
    return fingerprint(x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(serialization.Encoding.DER))


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> tuple[str | None, str | None]:
    """(common name, fingerprint) of the verified certificate the other end of a TLS connection presented."""
    if ssl_object is None:
        return None, None
    der = ssl_object.getpeercert(binary_form=True)
    return peer_name(ssl_object.getpeercert()), fingerprint(der) if der else None


# --- the devnet's own PKI -----------------------------------------------------------------------

def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "VirtuOZ devnet"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _load_ca(pki_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = pki_dir / f"{CA_NAME}.pem", pki_dir / f"{CA_NAME}.key"
    if cert_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name("VirtuOZ devnet TRP CA")).issuer_name(_name("VirtuOZ devnet TRP CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def ensure_devnet_pki(pki_dir: Path, identities: list[str], hosts: list[str]) -> None:
    """Create the CA and each identity's certificate where missing (for both server and client use)."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    pki_dir.chmod(0o700)
    ca_cert, ca_key = _load_ca(pki_dir)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    for name in identities:
        files = identity_files(pki_dir, name)
        if files.cert.exists() and files.key.exists():
            continue
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca_cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        _write_key(files.key, key)
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
