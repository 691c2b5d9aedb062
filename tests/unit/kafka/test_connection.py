"""Kafka security settings: combinations checked at start-up with the setting named, aiokafka options
built from files (the password never a value), and the start-up check's one-line failures."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from devtools.credentials import GeneratedCredentials, generate_credentials
from devtools.kafka_process import free_port
from service.__main__ import main
from service.errors import ConfigurationError, KafkaConnectionFailedError
from service.kafka.connection import check_connection, check_kafka_credentials, client_options
from service.settings import load_settings

PASSWORD = "s3cret-Pa55word"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> GeneratedCredentials:
    return generate_credentials(tmp_path_factory.mktemp("tls"), fcm_token_uri="http://127.0.0.1:9/unused")


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "kafka.password"
    path.write_text(PASSWORD + "\n")
    return path


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`main()` configures logging for the process; undo it so other tests keep theirs."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def sasl_ssl(password_file: Path, tls: GeneratedCredentials, **overrides: Any) -> dict[str, Any]:
    return {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "notifier",
        "kafka_sasl_password_file": password_file,
        "kafka_ssl_ca_file": tls.ca_cert,
    } | overrides


def test_plaintext_is_the_default_and_needs_nothing_else() -> None:
    options = client_options(load_settings(kafka_bootstrap_servers="k1:9092,k2:9092"))
    assert options == {"bootstrap_servers": "k1:9092,k2:9092", "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_options_verify_the_broker_and_read_the_password_from_its_file(
    password_file: Path, tls: GeneratedCredentials
) -> None:
    settings = load_settings(**sasl_ssl(password_file, tls))
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "notifier"
    assert options["sasl_plain_password"] == PASSWORD, "the file's trailing newline is not the password's"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert PASSWORD not in str(settings.redacted())


def test_sasl_plaintext_has_no_tls_and_ssl_has_no_sasl(
    password_file: Path, tls: GeneratedCredentials
) -> None:
    sasl_only = client_options(
        load_settings(
            **sasl_ssl(password_file, tls, kafka_security_protocol="SASL_PLAINTEXT", kafka_ssl_ca_file=None)
        )
    )
    assert "ssl_context" not in sasl_only
    assert sasl_only["sasl_mechanism"] == "SCRAM-SHA-512"
    tls_only = client_options(load_settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=tls.ca_cert))
    assert isinstance(tls_only["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in tls_only


def test_mutual_tls_loads_the_client_certificate(tls: GeneratedCredentials) -> None:
    settings = load_settings(
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=tls.ca_cert,
        kafka_ssl_cert_file=tls.server_cert,
        kafka_ssl_key_file=tls.server_key,
    )
    assert isinstance(client_options(settings)["ssl_context"], ssl.SSLContext)


@pytest.mark.parametrize(
    ("overrides", "named", "says"),
    [
        ({"kafka_sasl_mechanism": None}, "NOTIFIER_KAFKA_SASL_MECHANISM", "required when"),
        ({"kafka_sasl_username": None}, "NOTIFIER_KAFKA_SASL_USERNAME", "required when"),
        ({"kafka_sasl_password_file": None}, "NOTIFIER_KAFKA_SASL_PASSWORD_FILE", "required when"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "NOTIFIER_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        ({"kafka_security_protocol": "TLS"}, "NOTIFIER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
        ({"kafka_security_protocol": "PLAINTEXT"}, "NOTIFIER_KAFKA_SASL_USERNAME", "only used with SASL"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT"},
            "NOTIFIER_KAFKA_SSL_CA_FILE",
            "only used with SSL or SASL_SSL",
        ),
        ({"kafka_ssl_cert_file": "CERT"}, "NOTIFIER_KAFKA_SSL_KEY_FILE", "go together"),
        ({"kafka_ssl_key_file": "KEY"}, "NOTIFIER_KAFKA_SSL_KEY_FILE", "go together"),
        (
            {"kafka_sasl_password_file": "/nonexistent/pw"},
            "NOTIFIER_KAFKA_SASL_PASSWORD_FILE",
            "does not exist",
        ),
        ({"kafka_ssl_ca_file": "/nonexistent/ca.pem"}, "NOTIFIER_KAFKA_SSL_CA_FILE", "does not exist"),
    ],
)
def test_invalid_combinations_stop_start_up_naming_the_setting(
    password_file: Path, tls: GeneratedCredentials, overrides: dict[str, Any], named: str, says: str
) -> None:
    files = {"CERT": tls.server_cert, "KEY": tls.server_key}
    values = sasl_ssl(password_file, tls) | {key: files.get(v, v) for key, v in overrides.items()}
    with pytest.raises(ConfigurationError) as error:
        load_settings(**values)
    message = str(error.value)
    assert named in message
    assert says in message


@pytest.mark.parametrize(
    ("content", "says"),
    [(b"", "is empty"), (b"\n", "is empty"), (b"\xff\xfe", "not a readable UTF-8 file")],
)
def test_unusable_password_files_are_named_and_never_shown(
    tmp_path: Path, tls: GeneratedCredentials, content: bytes, says: str
) -> None:
    path = tmp_path / "pw"
    path.write_bytes(content)
    with pytest.raises(ConfigurationError, match=f"NOTIFIER_KAFKA_SASL_PASSWORD_FILE: .*{says}"):
        check_kafka_credentials(load_settings(**sasl_ssl(path, tls)))


def test_a_file_that_is_not_a_certificate_is_named(password_file: Path, tls: GeneratedCredentials) -> None:
    with pytest.raises(ConfigurationError, match="NOTIFIER_KAFKA_SSL_CA_FILE: not a readable PEM CA"):
        check_kafka_credentials(
            load_settings(**sasl_ssl(password_file, tls, kafka_ssl_ca_file=password_file))
        )
    mismatched = sasl_ssl(
        password_file, tls, kafka_ssl_cert_file=tls.server_cert, kafka_ssl_key_file=tls.apns_key
    )
    with pytest.raises(
        ConfigurationError, match="NOTIFIER_KAFKA_SSL_CERT_FILE / NOTIFIER_KAFKA_SSL_KEY_FILE"
    ):
        check_kafka_credentials(load_settings(**mismatched))


def test_check_config_checks_the_kafka_files(
    tmp_path: Path,
    tls: GeneratedCredentials,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = tmp_path / "empty.password"
    empty.write_text("")
    for key, value in sasl_ssl(empty, tls).items():
        monkeypatch.setenv(f"NOTIFIER_{key.upper()}", str(value))
    assert main(["check-config"]) == 2
    assert "NOTIFIER_KAFKA_SASL_PASSWORD_FILE: the file is empty" in capsys.readouterr().err


async def test_the_start_up_check_names_an_unreachable_broker(
    password_file: Path, tls: GeneratedCredentials
) -> None:
    port = free_port()
    settings = load_settings(kafka_bootstrap_servers=f"127.0.0.1:{port}", **sasl_ssl(password_file, tls))
    with pytest.raises(KafkaConnectionFailedError) as error:
        await check_connection(settings)
    message = str(error.value)
    assert message.startswith(f"cannot connect to Kafka (SASL_SSL): 127.0.0.1:{port}: unreachable")
    assert "\n" not in message
    assert PASSWORD not in message
