"""Throwaway credentials for running the push senders against the local provider fakes.

`generate_credentials(directory, fcm_token_uri=...)` writes, into one directory:

* a private CA and a server certificate for `localhost` / `127.0.0.1` signed by it, which the
  APNs fake serves and the APNs sender trusts through its extra-CA setting;
* an APNs auth key as Apple hands it out (`AuthKey_<KEYID>.p8`: EC P-256, PKCS#8 PEM) with a
  key id and a team id;
* an FCM service-account JSON (RSA key, `project_id`, `client_email`, `private_key_id`) whose
  `token_uri` points at the FCM fake's OAuth2 token endpoint.

Nothing here is secret: every key is made for one test run and thrown away with the directory.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_ID_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A private CA and a server certificate for `localhost` / `127.0.0.1` signed by it."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True, slots=True)
class GeneratedCredentials:
    """Where the generated files are and the identifiers that go with them."""

    directory: Path
    ca_cert: Path
    """PEM certificate of the private CA: the extra trust anchor for the APNs sender."""
    server_cert: Path
    """PEM certificate for `localhost` and `127.0.0.1`, signed by the CA."""
    server_key: Path
    apns_key: Path
    """Apple-style `.p8`: EC P-256 private key, PKCS#8 PEM."""
    apns_key_id: str
    apns_team_id: str
    fcm_service_account: Path
    fcm_project_id: str
    fcm_client_email: str
    fcm_private_key_id: str


def _apple_style_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


def _pem_private(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> Path:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)
    return path


def _certificate_authority(now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "livechat-notifier test CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_certificate(
    now: dt.datetime, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def generate_tls(directory: Path) -> TlsFiles:
    """Write a fresh CA and server certificate into `directory` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = _certificate_authority(now)
    server_key, server_cert = _server_certificate(now, ca_key, ca_cert)
    return TlsFiles(
        ca_cert=_write(directory / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM)),
        server_cert=_write(directory / "server.pem", server_cert.public_bytes(serialization.Encoding.PEM)),
        server_key=_write(directory / "server-key.pem", _pem_private(server_key), private=True),
    )


def generate_credentials(
    directory: Path,
    *,
    fcm_token_uri: str,
    fcm_project_id: str = "livechat-notifier-test",
    tls: TlsFiles | None = None,
) -> GeneratedCredentials:
    """Write a fresh set of test credentials into `directory` (created if missing).

    `tls`: a CA and server certificate made earlier (`generate_tls`), e.g. the one an FCM fake
    served over TLS already uses (its port, in `fcm_token_uri`, is known only once it listens);
    by default a new one is made."""
    directory.mkdir(parents=True, exist_ok=True)
    tls = tls or generate_tls(directory)
    ca_cert_path, server_cert_path, server_key_path = tls.ca_cert, tls.server_cert, tls.server_key

    apns_key_id, apns_team_id = _apple_style_id(), _apple_style_id()
    apns_key_path = _write(
        directory / f"AuthKey_{apns_key_id}.p8",
        _pem_private(ec.generate_private_key(ec.SECP256R1())),
        private=True,
    )

    fcm_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_key_id = secrets.token_hex(20)
    client_email = f"firebase-adminsdk-test@{fcm_project_id}.iam.gserviceaccount.com"
    service_account = {
        "type": "service_account",
        "project_id": fcm_project_id,
        "private_key_id": private_key_id,
        "private_key": _pem_private(fcm_key).decode(),
        "client_email": client_email,
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": fcm_token_uri,
        "universe_domain": "googleapis.com",
    }
    service_account_path = _write(
        directory / "fcm-service-account.json",
        json.dumps(service_account, indent=2).encode(),
        private=True,
    )

    return GeneratedCredentials(
        directory=directory,
        ca_cert=ca_cert_path,
        server_cert=server_cert_path,
        server_key=server_key_path,
        apns_key=apns_key_path,
        apns_key_id=apns_key_id,
        apns_team_id=apns_team_id,
        fcm_service_account=service_account_path,
        fcm_project_id=fcm_project_id,
        fcm_client_email=client_email,
        fcm_private_key_id=private_key_id,
    )
