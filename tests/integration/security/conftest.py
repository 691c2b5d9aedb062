"""A Kafka broker locked down like production: a SASL_SSL listener (TLS with a private CA, SCRAM-SHA-512
and PLAIN users) and ACLs enforced by the StandardAuthorizer.

The PLAINTEXT listener stays, for the test harness only: its principal (User:ANONYMOUS) is the super
user, so tests create topics, publish and read outputs there as other teams' services would with
their own rights. The worker under test connects to the SASL_SSL listener only, as a principal that
has exactly the ACLs `SecureKafka.grant_worker` gives it. SCRAM users are created when the storage is
formatted (`StorageTool format --add-scram`, KRaft's way of bootstrapping SCRAM credentials); PLAIN
users are listed in the listener's JAAS configuration; ACLs are created through the admin API
(CreateAcls) as the super user once the broker runs.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devtools.credentials import generate_credentials
from devtools.kafka_broker import KafkaBroker
from service.settings import Settings

SASL_LISTENER = "SASL_SSL"
MTLS_LISTENER = "MTLS"
"""An SSL listener that requires a client certificate (mutual TLS), signed by its own client CA."""

# Kafka's ACL enums (org.apache.kafka.common.resource / acl), as the CreateAcls request carries them.
_TOPIC, _GROUP, _CLUSTER, _TRANSACTIONAL_ID = 2, 3, 4, 5
_LITERAL, _PREFIXED = 3, 4
_READ, _WRITE, _DESCRIBE, _IDEMPOTENT_WRITE = 3, 4, 8, 12
_ALLOW = 3


@dataclass(frozen=True)
class SaslUser:
    name: str
    mechanism: str
    password: str
    password_file: Path


class _ScramFormattingBroker(KafkaBroker):
    """The harness's broker, formatted with SCRAM credentials (`--add-scram`) on first start."""

    def __init__(self, workdir: Path, scram: list[str]) -> None:
        super().__init__(workdir)
        self._scram = scram

    def _java_command(self, main_class: str, *args: str, heap: str) -> list[str]:
        if main_class == "kafka.tools.StorageTool":
            args = (*args, *(arg for entry in self._scram for arg in ("--add-scram", entry)))
        return super()._java_command(main_class, *args, heap=heap)


@dataclass(frozen=True)
class ClientCertificate:
    cert_file: Path
    key_file: Path


def _client_certificate(directory: Path) -> tuple[Path, ClientCertificate]:
    """A client CA (what the broker trusts) and a client certificate for `CN=notifier` it signed."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "livechat-notifier test client CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "notifier")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "client-ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file = directory / "client.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "client-key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)
    return ca_file, ClientCertificate(cert_file, key_file)


@dataclass
class SecureKafka:
    broker: KafkaBroker
    ca_file: Path
    """The CA that signed the broker's certificate (both TLS listeners)."""
    users: dict[str, SaslUser]
    client_certificate: ClientCertificate
    """Accepted by the MTLS listener."""

    @property
    def mtls_bootstrap(self) -> str:
        return self.broker.address(MTLS_LISTENER)

    @property
    def admin_bootstrap(self) -> str:
        """The harness's PLAINTEXT listener (super user): topics, publishing, reading outputs."""
        return self.broker.bootstrap_servers

    @property
    def sasl_bootstrap(self) -> str:
        return self.broker.address(SASL_LISTENER)

    def worker_settings(self, settings: Settings, user: str, **overrides: Any) -> dict[str, Any]:
        """`settings` (made on the admin listener) turned into a worker's: SASL_SSL as `user`."""
        sasl = self.users[user]
        return settings.redacted() | {
            "kafka_bootstrap_servers": self.sasl_bootstrap,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": sasl.mechanism,
            "kafka_sasl_username": sasl.name,
            "kafka_sasl_password_file": str(sasl.password_file),
            "kafka_ssl_ca_file": str(self.ca_file),
            **overrides,
        }

    async def grant_worker(self, user: str, settings: Settings) -> None:
        """What the worker needs, and nothing more: its topics (read, write), its consumer group (read),
        its transactional ids (write) and idempotent writes (the directory feed's dead-letter producer)."""
        topic_prefix = settings.topic_chat_events.split(".", 1)[0] + "."
        principal = f"User:{user}"
        acls = [
            (_TOPIC, topic_prefix, _PREFIXED, _READ),
            (_TOPIC, topic_prefix, _PREFIXED, _WRITE),
            (_TOPIC, topic_prefix, _PREFIXED, _DESCRIBE),
            (_GROUP, settings.group_id, _LITERAL, _READ),
            (_GROUP, f"{settings.group_id}-commands", _LITERAL, _READ),
            (_TRANSACTIONAL_ID, settings.transactional_prefix, _PREFIXED, _WRITE),
            (_CLUSTER, "kafka-cluster", _LITERAL, _IDEMPOTENT_WRITE),
        ]
        admin = AIOKafkaAdminClient(bootstrap_servers=self.admin_bootstrap)
        await admin.start()
        try:
            client = admin._client
            for resource_type, name, pattern, operation in acls:
                request = CreateAclsRequest(resource_type, name, pattern, principal, "*", operation, _ALLOW)
                response = await client.send(client.get_random_node(), request)
                for code, message in response.creation_responses:
                    assert code == 0, f"CreateAcls {name} for {principal}: error {code} {message}"
        finally:
            await admin.close()


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """One locked-down broker per test module."""
    workdir = tmp_path_factory.mktemp("secure-kafka")
    tls = generate_credentials(workdir / "tls", fcm_token_uri="http://127.0.0.1:9/unused")
    keystore = workdir / "broker-keystore.pem"  # Kafka's PEM key store: private key, then certificate
    keystore.write_bytes(tls.server_key.read_bytes() + tls.server_cert.read_bytes())
    keystore.chmod(0o600)

    users: dict[str, SaslUser] = {}
    for name, mechanism in [("alice", "SCRAM-SHA-512"), ("bob", "PLAIN"), ("mallory", "SCRAM-SHA-512")]:
        password = secrets.token_urlsafe(24)
        password_file = workdir / f"{name}.password"
        password_file.write_text(password + "\n")  # with a newline, as `echo ... > file` leaves it
        users[name] = SaslUser(name, mechanism, password, password_file)
    scram = [
        f"{u.mechanism}=[name={u.name},password={u.password}]"
        for u in users.values()
        if u.mechanism != "PLAIN"
    ]
    plain_users = " ".join(f'user_{u.name}="{u.password}"' for u in users.values() if u.mechanism == "PLAIN")

    client_ca, client_certificate = _client_certificate(workdir)

    broker = _ScramFormattingBroker(workdir / "broker", scram)
    broker.add_listener(SASL_LISTENER, security_protocol="SASL_SSL")
    broker.add_listener(MTLS_LISTENER, security_protocol="SSL")
    listener = f"listener.name.{SASL_LISTENER.lower()}"
    mtls = f"listener.name.{MTLS_LISTENER.lower()}"
    broker.extra_properties.update(
        {
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # The PLAINTEXT listeners (the harness, inter-broker and controller traffic) are ANONYMOUS.
            "super.users": "User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
            f"{listener}.sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
            f"{listener}.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            f"{listener}.plain.sasl.jaas.config": (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
            ),
            f"{listener}.ssl.keystore.type": "PEM",
            f"{listener}.ssl.keystore.location": str(keystore),
            f"{mtls}.ssl.keystore.type": "PEM",
            f"{mtls}.ssl.keystore.location": str(keystore),
            f"{mtls}.ssl.truststore.type": "PEM",
            f"{mtls}.ssl.truststore.location": str(client_ca),
            f"{mtls}.ssl.client.auth": "required",
        }
    )
    broker.start()
    try:
        yield SecureKafka(broker, tls.ca_cert, users, client_certificate)
    finally:
        broker.stop()
