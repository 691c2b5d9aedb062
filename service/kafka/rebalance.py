"""The consumer group's rebalance listener: hands assignment changes to `Ownership`, serialised
with the consumer loop's turns by the lock the loop holds during a turn."""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition


class Owner(Protocol):
    """What the listener needs of `Ownership`."""

    async def assign(self, consumer: AIOKafkaConsumer, partitions: list[int]) -> None: ...
    async def revoke(self, partitions: list[int]) -> None: ...
    def refresh_gauges(self) -> None: ...


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Takes assigned partitions over and releases revoked ones, never in the middle of a turn.

    aiokafka swallows exceptions raised here, so `Ownership` queues a take-over the broker failed
    for retry from the consumer loop rather than raising it."""

    def __init__(self, ownership: Owner, consumer: AIOKafkaConsumer, turn_lock: asyncio.Lock) -> None:
        self._ownership = ownership
        self._consumer = consumer
        self._turn_lock = turn_lock

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._turn_lock:
            await self._ownership.revoke([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        async with self._turn_lock:
            await self._ownership.assign(self._consumer, [tp.partition for tp in assigned])
            self._ownership.refresh_gauges()
