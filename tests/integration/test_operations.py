"""What SREs touch: the HTTP endpoints, the metrics, `topics ensure` and its first run on a new
cluster, and the refusal to run on a wrong topic layout."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from structlog.testing import capture_logs

from devtools.kafka_broker import KafkaBroker
from devtools.kafka_io import isolated_names
from service.app import Application
from service.clock import SystemClock
from service.errors import TopicLayoutError
from service.kafka.topics import ensure_topics, verify_topics
from service.settings import Settings
from tests.integration.conftest import MakeStack
from tests.integration.kafka_helpers import eventually, fresh_settings, run_cli
from tests.integration.stack import Stack

pytestmark = [pytest.mark.kafka]


async def test_probes_metrics_and_nothing_else_are_served(stack: Stack) -> None:
    await stack.site()
    app = await stack.start_worker()
    base = f"http://127.0.0.1:{app.http_port}"
    async with ClientSession() as http:
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with http.get(f"{base}/readyz") as response:
            assert response.status == 200
            assert await response.json() == {
                "ok": True,
                "checks": {"directories_loaded": True, "partitions_restored": True, "push_credentials": True},
            }
        async with http.get(f"{base}/metrics") as response:
            assert response.status == 200
            text = await response.text()
        async with http.get(f"{base}/admin") as response:
            assert response.status == 404
    # Series exist from the start (zeros, not gaps), with bounded labels only.
    assert 'notifier_rounds_closed_total{outcome="missed"} 0.0' in text
    assert 'notifier_pushes_total{kind="handoff_requested",outcome="token_dead",provider="apns"} 0.0' in text
    assert "notifier_owned_partitions 1.0" in text


async def test_missed_shows_in_metrics(stack: Stack) -> None:
    await stack.site()
    app = await stack.start_worker()
    await stack.request("chat-1", tta=1)
    await stack.wait_missed("chat-1")
    text = app.metrics.exposition().decode()
    assert 'notifier_rounds_closed_total{outcome="missed"} 1.0' in text
    assert "notifier_deadline_lateness_seconds_count 1.0" in text
    turns = next(line for line in text.splitlines() if line.startswith("notifier_turn_seconds_count"))
    assert float(turns.split()[1]) >= 1, "the turn that fired the Missed was timed"
    assert "notifier_consumer_lag_records 0.0" in text, "caught up after the Missed"
    assert 'notifier_events_consumed_total{type="livechat.chat.handoff_requested"} 1.0' in text


async def test_worker_refuses_a_changelog_with_another_partition_count(make_stack: MakeStack) -> None:
    stack = await make_stack(partitions=2)
    settings = stack.settings.model_copy(update={"topic_changelog": stack.settings.topic_changelog + "-odd"})
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(settings.topic_changelog, 3, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        await admin.close()
    with pytest.raises(TopicLayoutError, match=r"has 3 partitions but .* has 2"):
        await verify_topics(settings)
    with pytest.raises(TopicLayoutError):
        await ensure_topics(settings, 2, 1)


async def test_ensure_creates_a_missing_changelog_like_the_chat_events_topic(kafka: object) -> None:
    settings = await fresh_settings(kafka.bootstrap_servers, partitions=3)  # type: ignore[attr-defined]
    renamed = settings.model_copy(update={"topic_changelog": settings.topic_changelog + "-new"})
    report = await ensure_topics(renamed, partitions=7, replication_factor=1)
    assert report.created == [renamed.topic_changelog]
    await verify_topics(renamed)


_names = itertools.count()
_TIMESTAMP = "message.timestamp.type"


def _unused_settings(bootstrap: str) -> Settings:
    """Settings naming topics and a group nobody created yet."""
    prefix = f"ops{next(_names)}-{int(time.time() * 1000) % 10**8}"
    values: dict[str, Any] = {"kafka_bootstrap_servers": bootstrap, **isolated_names(prefix)}
    return Settings(**values)


async def _topic_config(bootstrap: str, topic: str, name: str) -> str:
    return (await _topic_config_entry(bootstrap, topic, name))[0]


_DYNAMIC_TOPIC_CONFIG = 1
"""DescribeConfigs v1+ `config_source` of a value set on the topic itself (5: the broker's default)."""


async def _topic_config_entry(bootstrap: str, topic: str, name: str) -> tuple[str, int]:
    """The config's value and its `config_source`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs={name: None})
        (response,) = await admin.describe_configs([resource])
    finally:
        await admin.close()
    (entry,) = response.resources[0][4]
    return str(entry[1]), int(entry[3])


async def test_ensure_uses_the_brokers_replication_factor_and_log_append_time(kafka: KafkaBroker) -> None:
    settings = _unused_settings(kafka.bootstrap_servers)
    # No factor given: the one-broker cluster's default (1) is used, where the old default 3 failed.
    report = await ensure_topics(settings, partitions=2)
    assert report.replication_factor == 1
    assert settings.topic_chat_events in report.created
    assert report.chat_events_timestamp_type == "LogAppendTime"
    assert report.warnings == []
    timestamp_type = await _topic_config(kafka.bootstrap_servers, settings.topic_chat_events, _TIMESTAMP)
    assert timestamp_type == "LogAppendTime"
    for name, value in (("retention.ms", 7 * 86_400_000), ("segment.ms", 86_400_000)):
        entry = await _topic_config_entry(kafka.bootstrap_servers, settings.topic_dead_letter, name)
        assert entry == (str(value), _DYNAMIC_TOPIC_CONFIG)  # set on the topic, not the cluster's default
    again = await ensure_topics(settings)
    assert again.created == []
    assert again.chat_events_timestamp_type == "LogAppendTime"
    assert again.warnings == []


async def test_ensure_explains_a_replication_factor_the_cluster_cannot_place(kafka: KafkaBroker) -> None:
    settings = _unused_settings(kafka.bootstrap_servers)
    with pytest.raises(TopicLayoutError) as refused:
        await ensure_topics(settings, partitions=2, replication_factor=3)
    message = str(refused.value)
    assert "INVALID_REPLICATION_FACTOR" in message
    assert "only 1 broker(s)" in message, "the broker's own explanation is kept"
    assert "pass --replication-factor no greater than the number of brokers" in message


async def test_cli_reports_an_existing_create_time_chat_events_topic(kafka: KafkaBroker) -> None:
    settings = _unused_settings(kafka.bootstrap_servers)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:  # as another team's tooling would create it: the broker's default timestamp type
        await admin.create_topics([NewTopic(settings.topic_chat_events, 3, 1)])
    finally:
        await admin.close()
    result = await asyncio.to_thread(run_cli, settings, "topics", "ensure", "--partitions", "4")
    assert result.returncode == 0, result.stderr
    assert '"chat_events_timestamp_type": "CreateTime"' in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("livechat-notifier: warning:")]
    assert len(warnings) == 2, result.stderr
    partitions, clocks = warnings
    assert f"{settings.topic_chat_events!r} already has 3 partitions, not 4" in partitions
    assert "message.timestamp.type=CreateTime" in clocks
    assert "producer_clock_tolerance_seconds" in clocks
    assert (
        f"`kafka-configs.sh --bootstrap-server {kafka.bootstrap_servers} --alter --entity-type topics "
        f"--entity-name {settings.topic_chat_events} --add-config message.timestamp.type=LogAppendTime`"
    ) in clocks
    # Reported, not altered; the changelog still follows the existing topic's partition count.
    timestamp_type = await _topic_config(kafka.bootstrap_servers, settings.topic_chat_events, _TIMESTAMP)
    assert timestamp_type == "CreateTime"
    await verify_topics(settings)


def test_cli_names_cause_and_fix_of_a_refused_topic(kafka: KafkaBroker) -> None:
    settings = _unused_settings(kafka.bootstrap_servers)
    result = run_cli(settings, "topics", "ensure", "--replication-factor", "2")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"livechat-notifier: Kafka refused to create topic {settings.topic_chat_events!r}")
    assert "INVALID_REPLICATION_FACTOR" in line
    assert "Kafka error code" not in line


@pytest.fixture
def new_cluster(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker nobody used yet: no consumer offsets topic, as on a first run."""
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.slow
async def test_first_start_on_a_new_cluster_logs_nothing_alarming(
    new_cluster: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """As an operator's first run: `topics ensure`, then the worker (no push providers needed)."""
    settings = _unused_settings(new_cluster.bootstrap_servers).model_copy(
        update={"http_host": "127.0.0.1", "http_port": 0}
    )
    await ensure_topics(settings, partitions=2)
    caplog.set_level(logging.INFO)
    app = Application(settings, [], SystemClock())
    with capture_logs() as events:
        running = asyncio.create_task(app.run(handle_signals=False))
        try:
            await eventually(lambda: app.ready() or running.done(), 60, "worker ready")
        finally:
            app.request_stop()
            assert await asyncio.wait_for(running, 30) == 0
    records = caplog.records
    alarming = [f"{r.name}: {r.getMessage()}" for r in records if r.levelno >= logging.WARNING]
    assert alarming == [], "library warnings on a normal first start"
    assert [event for event in events if event["log_level"] in {"warning", "error", "critical"}] == []
    assert any(event["event"] == "group_coordinator_ready" for event in events), "the wait was needed"
