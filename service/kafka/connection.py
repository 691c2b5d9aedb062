"""Connection settings shared by every Kafka client the worker creates, and the start-up check.

`client_options(settings)` is the single place where aiokafka client keyword arguments are built:
bootstrap servers, the security protocol, the TLS context (trusted CA, optional client certificate
for mutual TLS) and the SASL mechanism and credentials. The SASL password is read from its file
here, each time a client is built (so a rotated Secret is picked up by the next client), and
goes nowhere but into aiokafka. Problems with the files raise `ConfigurationError` naming the
setting, never showing a file's content.

`check_connection(settings)` opens one connection to a bootstrap server with exactly those
options (TLS handshake, API versions, SASL authentication) before the worker starts anything, so
a wrong password or an untrusted certificate stops start-up at once with the reason in one line —
instead of aiokafka's generic "Unable to bootstrap" after its own retries.

`wait_for_group_coordinator(settings)` asks for the consumer group's coordinator until the cluster
has one. On a new cluster the first such request makes the broker create its consumer offsets topic,
and until that is ready every lookup fails with COORDINATOR_NOT_AVAILABLE, which aiokafka's consumer
logs at ERROR ("Group Coordinator Request failed: [Error 15]") and retries. Waiting here first,
quietly, keeps a normal first start free of alarming lines; a lookup that still fails afterwards is
aiokafka's to report, as before.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    CoordinatorNotAvailableError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from service.errors import ConfigurationError, KafkaConnectionFailedError
from service.settings import Settings

log = structlog.get_logger(__name__)

CHECK_TIMEOUT_MS = 15_000
"""How long the start-up check waits for a broker's answers before calling it unreachable."""
COORDINATOR_WAIT_S = 30.0
"""How long start-up waits for a new cluster's group coordinator (its offsets topic: ~1 s here)."""
_COORDINATOR_RETRY_S = 0.2


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments common to aiokafka consumers, producers and admin clients."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": protocol,
    }
    if protocol in {"SSL", "SASL_SSL"}:
        options["ssl_context"] = ssl_context(settings)
    if protocol in {"SASL_PLAINTEXT", "SASL_SSL"}:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = sasl_password(settings)
    return options


def check_kafka_credentials(settings: Settings) -> None:
    """Offline check of the Kafka credential files (for `check-config`): raises ConfigurationError."""
    client_options(settings)


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """TLS for broker connections: certificates and host names verified, TLS 1.2 at least."""
    ca_file = settings.kafka_ssl_ca_file
    try:
        # With a CA file, only that CA is trusted; without one, the system's trust store.
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    except (OSError, ssl.SSLError) as error:
        raise ConfigurationError(
            f"NOTIFIER_KAFKA_SSL_CA_FILE: not a readable PEM CA certificate ({_ssl_reason(error)})"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.kafka_ssl_cert_file is not None:
        try:
            context.load_cert_chain(settings.kafka_ssl_cert_file, settings.kafka_ssl_key_file)
        except (OSError, ssl.SSLError) as error:
            raise ConfigurationError(
                "NOTIFIER_KAFKA_SSL_CERT_FILE / NOTIFIER_KAFKA_SSL_KEY_FILE: not a readable PEM certificate "
                f"and matching unencrypted private key ({_ssl_reason(error)})"
            ) from None
    return context


def sasl_password(settings: Settings) -> str:
    """The SASL password: the file's content without trailing line breaks (as `echo` leaves them)."""
    path = settings.kafka_sasl_password_file
    if path is None:
        raise ConfigurationError("NOTIFIER_KAFKA_SASL_PASSWORD_FILE: required for SASL")
    try:
        password = path.read_bytes().decode("utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(
            f"NOTIFIER_KAFKA_SASL_PASSWORD_FILE: not a readable UTF-8 file ({type(error).__name__})"
        ) from None
    if not password:
        raise ConfigurationError("NOTIFIER_KAFKA_SASL_PASSWORD_FILE: the file is empty")
    return password


async def check_connection(settings: Settings) -> None:
    """Connect to one bootstrap server as every client will; raise KafkaConnectionFailedError if none accepts.

    The message says, per server, what went wrong (unreachable, TLS verification, SASL
    authentication) and which setting to look at. It never contains the password.
    """
    options = client_options(settings)
    del options["bootstrap_servers"]
    problems: list[str] = []
    for host, port, _family in collect_hosts(settings.kafka_bootstrap_servers):
        try:
            connection = await create_conn(
                host,
                port,
                client_id="livechat-notifier-check",
                request_timeout_ms=CHECK_TIMEOUT_MS,
                **options,
            )
        except (OSError, KafkaError, TimeoutError) as error:
            problems.append(f"{host}:{port}: {_explain(error, settings)}")
            continue
        connection.close()
        return
    raise KafkaConnectionFailedError(
        f"cannot connect to Kafka ({settings.kafka_security_protocol}): " + "; ".join(problems)
    )


async def wait_for_group_coordinator(settings: Settings, timeout_s: float = COORDINATOR_WAIT_S) -> None:
    """Return once the group's coordinator is known, or after `timeout_s`, or on any other error
    (the consumer then meets and reports it itself)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    started = time.monotonic()
    try:
        while True:
            try:
                await admin.find_coordinator(settings.group_id)
            except CoordinatorNotAvailableError:
                if time.monotonic() - started > timeout_s:
                    return
                await asyncio.sleep(_COORDINATOR_RETRY_S)
            except KafkaError:
                return
            else:
                waited = time.monotonic() - started
                if waited > _COORDINATOR_RETRY_S:
                    log.info("group_coordinator_ready", seconds=round(waited, 3))
                return
    finally:
        await admin.close()


def _explain(error: BaseException, settings: Settings) -> str:  # noqa: PLR0911 -- one answer per cause
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"the broker's TLS certificate failed verification ({error.verify_message}); "
            "check NOTIFIER_KAFKA_SSL_CA_FILE and that the bootstrap host name is in the certificate"
        )
    if isinstance(error, ssl.SSLError):
        reason = _ssl_reason(error)
        if "CERTIFICATE" in reason.upper() or "UNKNOWN_CA" in reason.upper():  # the broker's TLS alert
            return (
                f"the broker refused this client's TLS certificate ({reason}); check "
                "NOTIFIER_KAFKA_SSL_CERT_FILE and NOTIFIER_KAFKA_SSL_KEY_FILE (mutual TLS)"
            )
        return f"TLS handshake failed ({reason}); is this a TLS listener?"
    if isinstance(error, KafkaConnectionError) and isinstance(error.__cause__, Exception):
        return _explain(error.__cause__, settings)  # aiokafka closed the connection because of this
    if isinstance(error, SaslAuthenticationFailed):
        return (
            f"SASL authentication failed for user {settings.kafka_sasl_username!r} with "
            f"{settings.kafka_sasl_mechanism} ({_first_line(error)}); check NOTIFIER_KAFKA_SASL_USERNAME "
            "and NOTIFIER_KAFKA_SASL_PASSWORD_FILE"
        )
    if isinstance(error, UnsupportedSaslMechanismError):
        return f"{_first_line(error)}; check NOTIFIER_KAFKA_SASL_MECHANISM"
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return (
            f"no answer within {CHECK_TIMEOUT_MS // 1000} s; check NOTIFIER_KAFKA_SECURITY_PROTOCOL "
            "against the listener"
        )
    if isinstance(error, OSError):
        return f"unreachable ({error.strerror or type(error).__name__})"
    return f"{type(error).__name__} ({_first_line(error)}); check NOTIFIER_KAFKA_SECURITY_PROTOCOL"


def _ssl_reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    return str(reason) if reason else type(error).__name__


def _first_line(error: BaseException) -> str:
    """The broker's or library's message without the class name, on one line."""
    text = str(error.args[0]) if error.args else getattr(error, "description", "") or type(error).__name__
    return " ".join(text.split())
