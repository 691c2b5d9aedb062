"""Restore one partition's state from the changelog before the worker processes it.

Reads changelog partition p from the beginning up to its end offset as a `read_committed`
consumer. The end offset is taken *after* the partition's transactional producer was
initialised: `init_transactions` with the partition's transactional id aborts whatever the
previous owner left open, so the last stable offset is final and restore cannot stall on, or
read, a zombie's uncommitted writes.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from service.gc_policy import collector_paused_then_frozen
from service.kafka.connection import client_options
from service.settings import Settings
from service.state.changelog import StateReplay
from service.state.store import PartitionStore

log = structlog.get_logger(__name__)


async def restore_partition(settings: Settings, partition: int) -> PartitionStore:
    # Restoring allocates millions of long-lived objects, none in a reference cycle: the cyclic
    # collector only slows it down (service/gc_policy.py).
    with collector_paused_then_frozen():
        return await _restore(settings, partition)


async def _restore(settings: Settings, partition: int) -> PartitionStore:
    tp = TopicPartition(settings.topic_changelog, partition)
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    replay = StateReplay()
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        begin = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        # An empty partition is skipped outright: asking its position would wait for a fetch.
        while end > begin and await consumer.position(tp) < end:
            batches = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
            replay.apply(before(batches.get(tp, []), end))
    finally:
        await consumer.stop()
    if replay.unreadable:
        log.error("changelog_records_unreadable", partition=partition, count=replay.unreadable)
    return PartitionStore.restored(partition, replay.states)


class _Record(Protocol):
    @property
    def offset(self) -> int: ...


_R = TypeVar("_R", bound=_Record)


def before(records: list[_R], end: int) -> list[_R]:
    """The records of a batch (in offset order) that precede offset `end`."""
    if not records or records[-1].offset < end:
        return records
    return [record for record in records if record.offset < end]
