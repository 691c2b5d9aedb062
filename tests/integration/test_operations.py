"""What SREs touch: the HTTP endpoints, the metrics, and the refusal to run on a wrong topic layout."""

from __future__ import annotations

import pytest
from aiohttp import ClientSession
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from service.errors import TopicLayoutError
from service.kafka.topics import ensure_topics, verify_topics
from tests.integration.conftest import MakeStack
from tests.integration.kafka_helpers import fresh_settings
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
    created = await ensure_topics(renamed, partitions=7, replication_factor=1)
    assert created == [renamed.topic_changelog]
    await verify_topics(renamed)
