"""Which input partitions this worker owns, and the lifecycle of each, in one place.

  assigned -> paused -> start its transactional producer (fences any previous owner)
           -> restore its store from the changelog -> seek to the committed offset -> resumed
  revoked / fenced / transaction failed -> stop its fan-outs and producer -> drop the store

Taking a partition over can fail (the broker is away, the coordinator moves). Such a partition stays
paused in `pending` and is retried with backoff from the consumer loop, never silently dropped:
aiokafka swallows exceptions raised in rebalance listeners, so a failed restore there would
otherwise leave an assigned partition nobody processes. A partition whose producer was fenced
waits at least a session timeout before it is retried: another worker most likely owns it, and
re-initialising at once would fence that worker in turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from service.backoff import Backoff
from service.clock import Clock
from service.gc_policy import freeze_long_lived
from service.kafka.progress import ReadProgress
from service.kafka.restore import restore_partition
from service.kafka.transactions import start_partition_producer
from service.observability.metrics import Metrics
from service.settings import Settings
from service.state.store import PartitionStore

log = structlog.get_logger(__name__)

RETRY = Backoff(base_s=0.5, cap_s=10.0)
"""Between attempts to take a partition over: soon at first (a coordinator moving is over in a
moment), then no more often than every 10 s while the broker stays away."""


@dataclass(slots=True)
class OwnedPartition:
    """A partition this worker owns: its restored state, its transactional producer, and how far
    the consumer has read it (the deadline gate's bookkeeping)."""

    store: PartitionStore
    producer: AIOKafkaProducer
    progress: ReadProgress = field(default_factory=ReadProgress)


class Ownership:
    """The partitions this worker owns and those it was assigned but could not take over yet.

    Knows nothing of pushes: `on_released(partition)` is awaited whenever a partition is let go
    (to cancel its fan-outs), `on_restored(partition, store)` is called once a take-over restored
    its state (to resume the fan-outs a crash interrupted)."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        clock: Clock,
        on_released: Callable[[int], Awaitable[None]],
        on_restored: Callable[[int, PartitionStore], None],
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._on_released = on_released
        self._on_restored = on_restored
        self.owned: dict[int, OwnedPartition] = {}
        self.pending: dict[int, tuple[float, int]] = {}
        """Assigned but not (yet) owned: partition -> (monotonic time of next try, failures)."""
        self.assigned_once = False

    @property
    def settled(self) -> bool:
        """Every assigned partition is owned and restored."""
        return self.assigned_once and not self.pending

    def topic_partition(self, partition: int) -> TopicPartition:
        return TopicPartition(self._settings.topic_chat_events, partition)

    async def assign(self, consumer: AIOKafkaConsumer, partitions: list[int]) -> None:
        """Called by the rebalance listener: take the partitions over, or queue them for retry."""
        consumer.pause(*(self.topic_partition(p) for p in partitions))
        now = self._clock.monotonic()
        for partition in partitions:
            if partition not in self.owned:
                self.pending[partition] = (now, 0)
        self.assigned_once = True
        await self.retry_pending(consumer)

    async def revoke(self, partitions: list[int]) -> None:
        for partition in partitions:
            self.pending.pop(partition, None)
            await self.release(partition)

    async def retry_pending(self, consumer: AIOKafkaConsumer) -> None:
        """Try to take over every pending partition whose retry time has come, concurrently."""
        if not self.pending:
            return
        assigned = {
            tp.partition for tp in consumer.assignment() if tp.topic == self._settings.topic_chat_events
        }
        for partition in [p for p in self.pending if p not in assigned]:
            del self.pending[partition]
        now = self._clock.monotonic()
        due = sorted(p for p, (at, _) in self.pending.items() if at <= now)
        if not due:
            return
        # Concurrently: each take-over is mostly waiting on the broker (InitProducerId, the
        # changelog fetch), so six partitions take about as long as one.
        results = await asyncio.gather(*(self._acquire(consumer, p) for p in due), return_exceptions=True)
        for partition, result in zip(due, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(
                result, KafkaError | OSError | TimeoutError
            ):
                raise result
            if isinstance(result, BaseException):
                failures = self.pending[partition][1] + 1
                delay = RETRY.delay(failures)
                self.pending[partition] = (self._clock.monotonic() + delay, failures)
                log.warning(
                    "partition_acquire_failed", partition=partition, error=repr(result), retry_in_s=delay
                )
            else:
                del self.pending[partition]
        freeze_long_lived()  # restored rounds are long-lived (service/gc_policy.py)

    async def lose(self, consumer: AIOKafkaConsumer, partition: int, *, fenced: bool) -> None:
        """A transaction of this partition failed: drop its state and take it over again later."""
        await self.release(partition)
        consumer.pause(self.topic_partition(partition))
        wait_s = self._settings.kafka_session_timeout_ms / 1000 if fenced else RETRY.base_s
        self.pending[partition] = (self._clock.monotonic() + wait_s, 0)

    async def release(self, partition: int) -> None:
        owned = self.owned.pop(partition, None)
        await self._on_released(partition)
        if owned is None:
            return
        try:
            await owned.producer.stop()
        except (KafkaError, OSError) as error:
            log.warning("producer_stop_failed", partition=partition, error=repr(error))
        log.info("partition_released", partition=partition)

    async def _acquire(self, consumer: AIOKafkaConsumer, partition: int) -> None:
        started = self._clock.monotonic()
        producer = await start_partition_producer(self._settings, partition)
        try:
            store = await restore_partition(self._settings, partition)
            tp = self.topic_partition(partition)
            committed = await consumer.committed(tp)
        except BaseException:
            await producer.stop()
            raise
        if committed is None:
            await consumer.seek_to_beginning(tp)  # nothing committed yet: read the partition from its start
        else:
            consumer.seek(tp, committed)
        self.owned[partition] = OwnedPartition(store, producer)
        consumer.resume(tp)
        seconds = self._clock.monotonic() - started
        self._metrics.restore_seconds.observe(seconds)
        log.info(
            "partition_restored",
            partition=partition,
            pending_rounds=store.pending_count,
            chats=store.chat_count,
            seconds=round(seconds, 3),
        )
        self._on_restored(partition, store)

    def refresh_gauges(self) -> None:
        """The gauges of what this worker holds: pending rounds and timers, lag, partitions."""
        stores = [owned.store for owned in self.owned.values()]
        self._metrics.pending_rounds.set(sum(store.pending_count for store in stores))
        self._metrics.pending_timers.set(sum(store.timer_count for store in stores))
        self._metrics.consumer_lag.set(sum(owned.progress.lag for owned in self.owned.values()))
        self._metrics.owned_partitions.set(len(stores))
