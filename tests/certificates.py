"""Test certificates (cryptography): a self-signed server certificate, a CA, and client certificates it signs."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Authority:
    cert: Any
    key: Any
    path: Path  # the CA certificate as PEM


def _builder(subject: x509.Name, issuer: x509.Name, public_key: Any) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1)))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(folder: Path, stem: str, cert: x509.Certificate, key: Any) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def self_signed(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files for ``localhost`` / 127.0.0.1, self-signed."""
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = _builder(_name("localhost"), _name("localhost"), key.public_key()).add_extension(san, critical=False) \
        .sign(key, hashes.SHA256())
    return _write(folder, "server", cert, key)


def authority(folder: Path, name: str) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _builder(_name(name), _name(name), key.public_key()) \
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256())
    return Authority(cert, key, _write(folder, name, cert, key)[0])


def client_certificate(folder: Path, ca: Authority, name: str) -> tuple[Path, Path]:
    """(certificate, key) PEM files for a client ``name`` signed by ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _builder(_name(name), ca.cert.subject, key.public_key()).sign(ca.key, hashes.SHA256())
    return _write(folder, name, cert, key)
