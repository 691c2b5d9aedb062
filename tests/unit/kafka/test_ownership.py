"""Ownership's hooks and retry schedule, and the rebalance listener's serialisation with turns,
with stand-ins for the consumer and the broker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from service.kafka import ownership as ownership_module
from service.kafka.ownership import Ownership
from service.kafka.rebalance import Rebalance
from service.observability.metrics import Metrics
from service.settings import Settings
from service.state.store import PartitionStore

SETTINGS = Settings()


@dataclass
class Clock:
    mono: float = 100.0

    def now_ms(self) -> int:
        return 1_800_000_000_000

    def monotonic(self) -> float:
        return self.mono


@dataclass
class Consumer:
    """What `Ownership` uses of `AIOKafkaConsumer`."""

    assigned: set[TopicPartition] = field(default_factory=set)
    paused: set[TopicPartition] = field(default_factory=set)

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)

    async def committed(self, tp: TopicPartition) -> int | None:
        return 7

    def seek(self, tp: TopicPartition, offset: int) -> None:
        pass


class Producer:
    async def stop(self) -> None:
        pass


@dataclass
class Hooks:
    released: list[int] = field(default_factory=list)
    restored: list[tuple[int, PartitionStore]] = field(default_factory=list)

    async def on_released(self, partition: int) -> None:
        self.released.append(partition)

    def on_restored(self, partition: int, store: PartitionStore) -> None:
        self.restored.append((partition, store))


def ownership(hooks: Hooks, clock: Clock) -> Ownership:
    metrics = Metrics([SETTINGS.topic_chat_events])
    return Ownership(SETTINGS, metrics, clock, hooks.on_released, hooks.on_restored)


def tp(partition: int) -> TopicPartition:
    return TopicPartition(SETTINGS.topic_chat_events, partition)


async def test_a_restored_partition_is_handed_to_the_restored_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    store = PartitionStore(3)

    async def producer(settings: Settings, partition: int) -> Producer:
        return Producer()

    async def restore(settings: Settings, partition: int) -> PartitionStore:
        return store

    monkeypatch.setattr(ownership_module, "start_partition_producer", producer)
    monkeypatch.setattr(ownership_module, "restore_partition", restore)
    hooks, consumer = Hooks(), Consumer({tp(3)})
    owner = ownership(hooks, Clock())
    await owner.assign(consumer, [3])
    assert hooks.restored == [(3, store)]
    assert set(owner.owned) == {3}
    assert owner.settled
    assert consumer.paused == set(), "resumed once restored"


async def test_every_released_partition_goes_through_the_released_hook() -> None:
    """Released or revoked, owned or still pending: its fan-outs must stop either way."""
    hooks = Hooks()
    await ownership(hooks, Clock()).revoke([1, 2])
    assert hooks.released == [1, 2]


async def test_a_failed_take_over_is_retried_with_a_growing_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broker_away(settings: Settings, partition: int) -> Producer:
        raise KafkaConnectionError

    monkeypatch.setattr(ownership_module, "start_partition_producer", broker_away)
    clock, consumer = Clock(), Consumer({tp(0)})
    owner = ownership(Hooks(), clock)
    await owner.assign(consumer, [0])
    delays = []
    for _ in range(6):
        retry_at, _failures = owner.pending[0]
        delays.append(retry_at - clock.mono)
        clock.mono = retry_at
        await owner.retry_pending(consumer)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert not owner.settled


async def test_a_fenced_partition_waits_a_session_timeout_before_it_is_retried() -> None:
    clock, consumer = Clock(), Consumer({tp(0)})
    owner = ownership(Hooks(), clock)
    await owner.lose(consumer, 0, fenced=True)
    assert owner.pending[0] == (clock.mono + SETTINGS.kafka_session_timeout_ms / 1000, 0)
    await owner.lose(consumer, 1, fenced=False)
    assert owner.pending[1] == (clock.mono + 0.5, 0)


class RecordingOwnership:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def revoke(self, partitions: list[int]) -> None:
        self.calls.append(f"revoke {partitions}")

    async def assign(self, consumer: object, partitions: list[int]) -> None:
        self.calls.append(f"assign {partitions}")

    def refresh_gauges(self) -> None:
        self.calls.append("gauges")


async def test_the_rebalance_listener_waits_for_the_turn_in_progress() -> None:
    owner, lock = RecordingOwnership(), asyncio.Lock()
    listener = Rebalance(owner, Consumer(), lock)
    await lock.acquire()  # a turn is running
    revoking = asyncio.create_task(listener.on_partitions_revoked([tp(1)]))
    assigning = asyncio.create_task(listener.on_partitions_assigned([tp(2)]))
    await asyncio.sleep(0.01)
    assert owner.calls == [], "ownership changed in the middle of a turn"
    lock.release()
    await asyncio.gather(revoking, assigning)
    assert owner.calls == ["revoke [1]", "assign [2]", "gauges"]
