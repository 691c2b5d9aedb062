"""Commits one partition's step: its consumed offset, changelog writes and output records in one
Kafka transaction of the partition's own producer (service/kafka/transactions.py).

The order inside the transaction: consumed offset (`send_offsets_to_transaction`) -> changelog
writes + output events -> commit. The order does not change what commits together; offsets go
first because the broker refuses a transaction's first request while the previous commit's markers
are still being written (CONCURRENT_TRANSACTIONS), and aiokafka retries a refused AddOffsetsToTxn
after `retry_backoff_ms` but a refused AddPartitionsToTxn after a fixed 20 ms whatever the
setting; offsets first commits faster (figures: docs/benchmarks.md, "Transactions and the turn").
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer, TopicPartition

from service.partition.records import OutRecord
from service.partition.step import StepResult

COMMIT_TIMEOUT_S = 30.0
"""Longest a partition's transaction may take before it counts as failed (broker timeout: 60 s)."""


async def commit_step(
    producer: AIOKafkaProducer, tp: TopicPartition, group_id: str, result: StepResult
) -> None:
    """Write and commit the step's transaction; raises a KafkaError or TimeoutError if it failed."""
    # Bounded: a producer that lost its coordinator (or was fenced mid-send) must not hold the
    # loop, and with it the rebalance listener, forever; a timeout counts as a failed transaction.
    async with asyncio.timeout(COMMIT_TIMEOUT_S):
        async with producer.transaction():
            if result.next_offset is not None:
                await producer.send_offsets_to_transaction({tp: result.next_offset}, group_id)
            futures = [await _send(producer, record) for record in result.records]
        await asyncio.gather(*futures)


async def _send(producer: AIOKafkaProducer, record: OutRecord) -> asyncio.Future[object]:
    future: asyncio.Future[object] = await producer.send(
        record.topic,
        value=record.value,
        key=record.key,
        partition=record.partition,
        headers=list(record.headers) or None,
    )
    return future
