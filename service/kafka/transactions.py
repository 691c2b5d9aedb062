"""One transactional producer per owned input partition — the worker's fencing mechanism.

aiokafka commits consumed offsets inside a transaction with TxnOffsetCommit v0, which carries
no consumer-group generation, so the broker cannot refuse a commit from a worker that was
rebalanced away (KIP-447 is out of reach). Instead every input partition p has its own
transactional id, `<prefix>-<topic>-<p>`. Whoever takes p over calls `init_transactions` with
that id: the broker bumps the producer epoch, aborts the previous owner's open transaction, and
rejects anything that owner tries to write or commit from then on (ProducerFenced).
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from service.kafka.connection import client_options
from service.settings import Settings


def transactional_id(settings: Settings, partition: int) -> str:
    return f"{settings.transactional_prefix}-{settings.topic_chat_events}-{partition}"


async def start_partition_producer(settings: Settings, partition: int) -> AIOKafkaProducer:
    """Start the partition's producer; `start()` runs init_transactions, fencing older owners."""
    producer = AIOKafkaProducer(
        **client_options(settings),
        transactional_id=transactional_id(settings, partition),
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        # The broker writes a commit's markers after answering it; a transaction begun at once
        # (the next turn) is refused with CONCURRENT_TRANSACTIONS until they are written and
        # retried after this backoff (see the commit order in commit.py). The default, 100 ms,
        # made busy partitions' commits several times slower (docs/benchmarks.md, "Transactions
        # and the turn").
        retry_backoff_ms=20,
        transaction_timeout_ms=60_000,
    )
    await producer.start()
    return producer
