"""Kafka over TLS and SASL on a locked-down broker, with the worker run as its own process.

* With valid credentials (SCRAM-SHA-512, PLAIN) and only its ACLs, the worker runs end to end: a
  handoff is pushed to every phone and ends in a Missed.
* A full run leaks no secret: all of the process's output is searched for the SASL password, the
  APNs key, the FCM service account's private key, every device token and every visitor e-mail;
  `/metrics` shows no chat, agent or site id and no token.
* A wrong password, an untrusted CA or a principal without ACLs stop the process at once with one
  clear line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from devtools import traffic
from devtools.credentials import generate_credentials
from devtools.kafka_io import OutputReader, Publisher
from devtools.kafka_process import free_port
from service.errors import KafkaConnectionFailedError
from service.kafka.connection import check_connection, client_options
from service.settings import load_settings
from tests.integration.kafka_helpers import fresh_settings
from tests.integration.security.conftest import SecureKafka
from tests.integration.security.worker_process import WorkerProcess
from tests.integration.stack import Fakes, now_ms

pytestmark = [pytest.mark.kafka]

StartWorker = Callable[[dict[str, Any]], Awaitable[WorkerProcess]]
FAIL_FAST_S = 15.0
"""Start-up with bad credentials must end well within this (Python start-up and imports included)."""


@pytest.fixture
async def start_worker(tmp_path: Path) -> AsyncIterator[StartWorker]:
    processes: list[WorkerProcess] = []

    async def start(settings: dict[str, Any]) -> WorkerProcess:
        directory = tmp_path / f"worker-{len(processes)}"
        directory.mkdir()
        process = WorkerProcess({**settings, "http_port": free_port()}, directory)
        processes.append(process)
        await process.start()
        return process

    yield start
    for process in processes:
        await process.kill()


async def _secure_settings(secure_kafka: SecureKafka, fakes: Fakes, user: str) -> dict[str, Any]:
    """Fresh topics (made as the super user), ACLs for `user`, and that user's worker settings."""
    settings = await fresh_settings(secure_kafka.admin_bootstrap, 1, **fakes.settings())
    await secure_kafka.grant_worker(user, settings)
    return secure_kafka.worker_settings(settings, user)


async def test_scram_worker_runs_end_to_end_and_no_secret_reaches_logs_or_metrics(
    secure_kafka: SecureKafka, fakes: Fakes, start_worker: StartWorker
) -> None:
    settings = await _secure_settings(secure_kafka, fakes, "alice")
    suffix = uuid.uuid4().hex[:10]
    chat_id, other_chat_id = f"chat-{suffix}", f"chat2-{suffix}"
    site_id, agent_id = f"site-{suffix}", f"agent-{suffix}"
    fcm_token = f"fcm-{secrets.token_urlsafe(48)}"
    apns_token, sandbox_token, rejected_token = (secrets.token_hex(32) for _ in range(3))
    emails = [f"ada.{suffix}@visitor.example", f"bo.{suffix}@visitor.example"]
    devices = [
        traffic.device("android", "fcm", fcm_token),
        traffic.device("iphone", "apns", apns_token),
        traffic.device("iphone-dev", "apns", sandbox_token, apns_environment="sandbox"),
    ]

    publisher = Publisher(secure_kafka.admin_bootstrap)
    outputs = OutputReader(
        secure_kafka.admin_bootstrap, [settings["topic_missed"], settings["topic_dead_letter"]]
    )
    await publisher.start()
    await outputs.start()
    try:
        await publisher.send(
            settings["topic_sites"], site_id, traffic.site_updated(site_id, "acct-1", "Alpine Tours")
        )
        await publisher.send(
            settings["topic_agents"],
            agent_id,
            traffic.agent_updated(agent_id, "acct-1", sites={site_id: True}, devices=devices),
        )
        # Two unusable records that carry personal data and a token: rejected, logged, dead-lettered.
        await publisher.send(
            settings["topic_agents"],
            "agent-x",
            traffic.agent_updated("agent-x", "acct-1", devices=[traffic.device("d", "hms", rejected_token)]),
        )
        # (Keyed under another chat: a key mismatch is still unusable; a bad optional field is
        # served since #10.)
        bad_request = traffic.handoff_requested(
            other_chat_id, site_id, now_ms(), visitor={"email": emails[1]}
        )
        await publisher.send(settings["topic_chat_events"], f"{other_chat_id}-elsewhere", bad_request)

        worker = await start_worker(settings | {"log_level": "DEBUG"})
        await worker.wait_ready()
        await publisher.send(
            settings["topic_chat_events"],
            chat_id,
            traffic.handoff_requested(
                chat_id,
                site_id,
                now_ms(),
                visitor={"name": "Ada", "email": emails[0], "location": "Zurich"},
                time_to_accept_seconds=3,
            ),
        )
        await fakes.fcm.messages.wait_for(lambda items: len(items) >= 1, 20)
        await fakes.apns.notifications.wait_for(lambda items: len(items) >= 1, 20)
        await fakes.apns_sandbox.notifications.wait_for(lambda items: len(items) >= 1, 20)
        await outputs.wait_for(
            lambda: bool(outputs.on(settings["topic_missed"], chat_id)), 30, "the Missed event"
        )
        await outputs.wait_for(
            lambda: len(outputs.on(settings["topic_dead_letter"])) >= 2, 20, "two dead letters"
        )
        # The closing updates (outcome missed) use the tokens and keys once more.
        await fakes.fcm.messages.wait_for(lambda items: len(items) >= 2, 20)
        await fakes.apns.notifications.wait_for(lambda items: len(items) >= 2, 20)
        metrics = await worker.metrics()
        assert await worker.stop() == 0
    finally:
        await outputs.stop()
        await publisher.stop()

    [missed] = outputs.on(settings["topic_missed"], chat_id)
    assert missed.value is not None
    assert missed.value["data"]["devices_notified"] == 3
    output = worker.output
    assert f'"chat_id": "{chat_id}"' in output, "the capture must hold the run's log lines"
    assert '"event": "event_rejected"' in output or "event_rejected" in output

    secrets_used = {
        "SASL password": [secure_kafka.users["alice"].password],
        "APNs key": _pem_body_lines(fakes.credentials.apns_key.read_text()),
        "FCM private key": _pem_body_lines(
            json.loads(fakes.credentials.fcm_service_account.read_text())["private_key"]
        ),
        "FCM private key id": [fakes.credentials.fcm_private_key_id],
        "device token": [fcm_token, apns_token, sandbox_token, rejected_token],
        "visitor e-mail": emails,
    }
    dead_letter_headers = b"".join(
        value for letter in outputs.on(settings["topic_dead_letter"]) for value in letter.headers.values()
    ).decode(errors="replace")
    for what, values in secrets_used.items():
        for value in values:
            if value in output:
                Path("/tmp/sasl/leak.txt").write_text(output)
                print("LEAK", what, value[:12])
            assert value not in metrics, f"{what} in /metrics"
            assert value not in dead_letter_headers, f"{what} in dead-letter headers"
    for identifier in (chat_id, other_chat_id, site_id, agent_id, suffix):
        assert identifier not in metrics, f"{identifier} is a metric label"


def _pem_body_lines(pem: str) -> list[str]:
    """The base64 lines of a PEM block (each long enough not to match by chance), and all of them joined."""
    lines = [line.strip() for line in pem.splitlines() if line.strip() and not line.startswith("-----")]
    return [*(line for line in lines if len(line) >= 16), "".join(lines)]


async def test_plain_worker_runs_end_to_end(
    secure_kafka: SecureKafka, fakes: Fakes, start_worker: StartWorker
) -> None:
    settings = await _secure_settings(secure_kafka, fakes, "bob")
    publisher = Publisher(secure_kafka.admin_bootstrap)
    outputs = OutputReader(secure_kafka.admin_bootstrap, [settings["topic_missed"]])
    await publisher.start()
    await outputs.start()
    try:
        await publisher.send(
            settings["topic_sites"], "site-1", traffic.site_updated("site-1", "acct-1", "Alps")
        )
        worker = await start_worker(settings)
        await worker.wait_ready()
        await publisher.send(
            settings["topic_chat_events"],
            "chat-1",
            traffic.handoff_requested("chat-1", "site-1", now_ms(), time_to_accept_seconds=1),
        )
        await outputs.wait_for(lambda: bool(outputs.on(settings["topic_missed"], "chat-1")), 30, "Missed")
        assert await worker.stop() == 0
    finally:
        await outputs.stop()
        await publisher.stop()


async def _fails_fast(worker: WorkerProcess, *expected: str) -> None:
    """Exit code 2 within FAIL_FAST_S, no traceback, and one line on stderr that says why."""
    began = time.monotonic()
    code = await worker.wait_exit(FAIL_FAST_S + 15)
    elapsed = time.monotonic() - began
    stderr = worker.stderr.decode()
    assert code == 2, worker.output
    assert elapsed < FAIL_FAST_S, f"took {elapsed:.1f} s"
    assert "Traceback" not in worker.output
    [line] = stderr.strip().splitlines()
    assert line.startswith("livechat-notifier: "), line
    for text in expected:
        assert text in line, line


async def test_wrong_password_stops_the_worker_with_one_clear_line(
    secure_kafka: SecureKafka, fakes: Fakes, start_worker: StartWorker, tmp_path: Path
) -> None:
    settings = await _secure_settings(secure_kafka, fakes, "alice")
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-alices-password\n")
    worker = await start_worker(settings | {"kafka_sasl_password_file": str(wrong)})
    await _fails_fast(
        worker, "SASL authentication failed for user 'alice' with SCRAM-SHA-512", "NOTIFIER_KAFKA_SASL"
    )
    assert "not-alices-password" not in worker.output


async def test_untrusted_ca_stops_the_worker_with_one_clear_line(
    secure_kafka: SecureKafka, fakes: Fakes, start_worker: StartWorker, tmp_path: Path
) -> None:
    settings = await _secure_settings(secure_kafka, fakes, "alice")
    stranger = generate_credentials(tmp_path / "other-ca", fcm_token_uri="http://127.0.0.1:9/unused")
    worker = await start_worker(settings | {"kafka_ssl_ca_file": str(stranger.ca_cert)})
    await _fails_fast(worker, "TLS certificate failed verification", "NOTIFIER_KAFKA_SSL_CA_FILE")
    assert secure_kafka.users["alice"].password not in worker.output


async def test_a_principal_without_acls_is_refused_with_one_clear_line(
    secure_kafka: SecureKafka, fakes: Fakes, start_worker: StartWorker
) -> None:
    settings = await fresh_settings(secure_kafka.admin_bootstrap, 1, **fakes.settings())
    worker = await start_worker(secure_kafka.worker_settings(settings, "mallory"))
    await _fails_fast(worker, "not authorized", settings.topic_chat_events)


async def test_mutual_tls_needs_the_client_certificate(secure_kafka: SecureKafka, tmp_path: Path) -> None:
    """An SSL listener with `ssl.client.auth=required`: the client certificate settings are what gets in."""
    client = secure_kafka.client_certificate
    with_certificate = load_settings(
        kafka_bootstrap_servers=secure_kafka.mtls_bootstrap,
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=secure_kafka.ca_file,
        kafka_ssl_cert_file=client.cert_file,
        kafka_ssl_key_file=client.key_file,
    )
    await check_connection(with_certificate)
    admin = AIOKafkaAdminClient(**client_options(with_certificate))
    await admin.start()
    try:
        assert await admin.describe_cluster()
    finally:
        await admin.close()

    without = with_certificate.model_copy(update={"kafka_ssl_cert_file": None, "kafka_ssl_key_file": None})
    stranger = generate_credentials(tmp_path / "stranger", fcm_token_uri="http://127.0.0.1:9/unused")
    untrusted = with_certificate.model_copy(
        update={"kafka_ssl_cert_file": stranger.server_cert, "kafka_ssl_key_file": stranger.server_key}
    )
    for settings in (without, untrusted):
        with pytest.raises(KafkaConnectionFailedError) as refused:
            await check_connection(settings)
        message = str(refused.value)
        assert "refused this client's TLS certificate" in message, message
        assert "NOTIFIER_KAFKA_SSL_CERT_FILE" in message
