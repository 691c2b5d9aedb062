"""Restoring a partition's state from the real changelog: the last record per chat wins,
tombstones forget, unreadable records are logged and skipped, timers are rebuilt, and repeated
device lists are shared among the restored rounds."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer
from structlog.testing import capture_logs

from devtools.changelog_fill import TARGETS, fill_changelog, pending_round
from devtools.kafka_broker import KafkaBroker
from service.domain.rounds import ClosedRound, Outcome, PendingRound
from service.kafka.restore import restore_partition
from service.state.changelog import encode_state
from tests.integration.kafka_helpers import fresh_settings

pytestmark = pytest.mark.kafka

T0 = 1_800_000_000_000


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    """restore_partition freezes what it restored (as the worker wants); the test process does not."""
    yield
    gc.unfreeze()


async def test_restore_replays_the_changelog_to_its_end(kafka: KafkaBroker) -> None:
    settings = await fresh_settings(kafka.bootstrap_servers, partitions=1)
    await fill_changelog(kafka.bootstrap_servers, settings.topic_changelog, 0, 4, T0, T0 + 60_000)
    closed = ClosedRound("req-0000000001", "chat-0000000001", Outcome.MISSED, T0 + 60_000, T0 + 30_000)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        topic = settings.topic_changelog
        await producer.send_and_wait(topic, key=b"chat-0000000001", value=encode_state(closed), partition=0)
        await producer.send_and_wait(topic, key=b"chat-0000000002", value=None, partition=0)
        await producer.send_and_wait(topic, key=b"chat-garbage", value=b"\x93\xa1x\x01\x02", partition=0)
    finally:
        await producer.stop()

    with capture_logs() as logs:
        store = await restore_partition(settings, 0)

    assert (store.chat_count, store.pending_count, store.timer_count) == (3, 2, 3)
    assert store.get("chat-0000000000") == pending_round(0, T0, T0 + 60_000)
    assert store.get("chat-0000000001") == closed
    assert store.get("chat-0000000002") is None
    assert store.pop_due(T0 + 60_000, limit=10) == ["chat-0000000001", "chat-0000000000", "chat-0000000003"]
    first, last = store.get("chat-0000000000"), store.get("chat-0000000003")
    assert isinstance(first, PendingRound) and isinstance(last, PendingRound)
    assert first.targets == TARGETS
    assert first.targets is last.targets is last.delivered
    assert [(log["event"], log["count"]) for log in logs if log["log_level"] == "error"] == [
        ("changelog_records_unreadable", 1)
    ]


async def test_an_empty_changelog_restores_an_empty_store(kafka: KafkaBroker) -> None:
    settings = await fresh_settings(kafka.bootstrap_servers, partitions=1)
    store = await restore_partition(settings, 0)
    assert (store.chat_count, store.pending_count, store.timer_count) == (0, 0, 0)
