"""The chat-events worker: one consumer loop that owns partitions, their state and transactions.

Lifecycle of a partition (all of it here and in `_Rebalance`):
  assigned -> start its transactional producer (fences the previous owner) -> restore its store
  from the changelog -> resume interrupted fan-outs -> process -> revoked -> wait for the step in
  progress -> stop its fan-outs and producer -> drop the store.

Each loop turn polls, then runs one step per partition that has records, fan-out reports or due
timers, inside that partition's transaction, in this order (the commit order):
  changelog writes + output events -> consumed offset (send_offsets_to_transaction) -> commit.
Only after the commit are pushes started and metrics counted, so neither ever reflects a change
that was rolled back. If a transaction fails, the partition's store is discarded and restored
from the changelog, and the consumer seeks back to the last committed offset.
"""

from __future__ import annotations

import asyncio
import gc
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from service.clock import Clock
from service.domain.deadlines import PartitionProgress, fire_horizon_ms
from service.domain.decide import World
from service.kafka.connection import client_options
from service.kafka.restore import restore_partition
from service.kafka.step import ConsumedRecord, OutRecord, PartitionStep, StepResult
from service.kafka.transactions import start_partition_producer
from service.observability.metrics import Metrics
from service.push.fanout import DeviceRejected, FanOut, FanOutReport
from service.settings import Settings
from service.state.store import PartitionStore

log = structlog.get_logger(__name__)

IDLE_POLL_MS = 250
"""Longest poll when no timer is near: bounds how late fan-out reports are recorded."""


@dataclass(slots=True)
class _Owned:
    store: PartitionStore
    producer: AIOKafkaProducer
    read_up_to_ms: int = -1


class ChatWorker:
    def __init__(
        self,
        settings: Settings,
        world: World,
        metrics: Metrics,
        clock: Clock,
        fan_out_factory: Callable[[Callable[[FanOutReport], None]], FanOut],
    ) -> None:
        self._settings = settings
        self._world = world
        self._metrics = metrics
        self._clock = clock
        self._step = PartitionStep(settings, world, settings.decode_limits())
        self._owned: dict[int, _Owned] = {}
        self._reports: defaultdict[int, list[FanOutReport]] = defaultdict(list)
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._assigned = False
        self._restoring = False
        self.fan_out = fan_out_factory(self._on_report)

    @property
    def ready(self) -> bool:
        """The group assigned this worker its partitions and every one of them is restored."""
        return self._assigned and not self._restoring

    @property
    def owned_partitions(self) -> list[int]:
        return sorted(self._owned)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        settings = self._settings
        consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=settings.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(1000, settings.kafka_session_timeout_ms // 4),
        )
        consumer.subscribe([settings.topic_chat_events], listener=_Rebalance(self))
        await consumer.start()
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(
                    timeout_ms=self._poll_timeout_ms(), max_records=settings.kafka_max_batch_records
                )
                async with self._lock:
                    await self._turn(consumer, batches)
        finally:
            await self._shut_down(consumer)

    async def _shut_down(self, consumer: AIOKafkaConsumer) -> None:
        """Let fan-outs finish, commit what they reported, leave the group, release partitions."""
        await self.fan_out.close(self._settings.shutdown_grace_seconds / 2)
        async with self._lock:
            try:
                await self._turn(consumer, {})
            except KafkaError as error:
                log.warning("final_commit_failed", error=repr(error))
            await consumer.stop()
            for partition in list(self._owned):
                await self._release(partition)

    def _poll_timeout_ms(self) -> int:
        now = self._clock.now_ms()
        due = [owned.store.next_due_ms() for owned in self._owned.values()]
        nearest = min((d for d in due if d is not None), default=None)
        if nearest is None:
            return IDLE_POLL_MS
        return max(1, min(IDLE_POLL_MS, nearest - now))

    async def _turn(
        self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[ConsumedRecord]]
    ) -> None:
        for partition, owned in list(self._owned.items()):
            tp = TopicPartition(self._settings.topic_chat_events, partition)
            records = batches.get(tp, [])
            if records:
                owned.read_up_to_ms = max(owned.read_up_to_ms, *(r.timestamp for r in records))
            reports = self._reports.pop(partition, [])
            progress = PartitionProgress(await self._caught_up(consumer, tp), owned.read_up_to_ms)
            now = self._clock.now_ms()
            result = self._step.run(owned.store, records, reports, fire_horizon_ms(now, progress), now)
            if result.empty:
                continue
            try:
                await self._commit(owned.producer, tp, result)
            except KafkaError as error:
                self._metrics.transactions.labels("aborted").inc()
                log.exception("transaction_failed", partition=partition, error=repr(error))
                await self._reset(consumer, partition)
                continue
            self._after_commit(partition, result)
        self._refresh_gauges()

    async def _caught_up(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> bool:
        # The position, not the last record's offset + 1: the consumer steps over transaction
        # markers, which occupy offsets, so only the position can reach the stable offset.
        stable = consumer.last_stable_offset(tp)
        if stable is None:
            return False
        return bool(await consumer.position(tp) >= stable)

    async def _commit(self, producer: AIOKafkaProducer, tp: TopicPartition, result: StepResult) -> None:
        async with producer.transaction():
            futures = [await _send(producer, record) for record in result.records]
            if result.next_offset is not None:
                await producer.send_offsets_to_transaction({tp: result.next_offset}, self._settings.group_id)
        await asyncio.gather(*futures)
        self._metrics.transactions.labels("committed").inc()

    def _after_commit(self, partition: int, result: StepResult) -> None:
        metrics = self._metrics
        for event_type in result.consumed_types:
            metrics.events_consumed.labels(event_type).inc()
        for topic, reason in result.rejected:
            metrics.events_rejected.labels(topic, reason.value).inc()
        for why in result.ignored:
            metrics.events_ignored.labels(why).inc()
        metrics.rounds_started.inc(result.started)
        for closed in result.closed:
            metrics.rounds_closed.labels(closed.outcome.value).inc()
            if closed.outcome.value == "missed":
                metrics.deadline_lateness.observe(closed.lateness_ms / 1000)
            log.info(
                "round_closed",
                chat_id=closed.chat_id,
                site_id=closed.site_id,
                partition=partition,
                outcome=closed.outcome.value,
                lateness_ms=closed.lateness_ms,
            )
        for job in result.pushes:
            self.fan_out.submit(partition, job)

    def _on_report(self, report: FanOutReport) -> None:
        if isinstance(report, DeviceRejected):
            rejection = report.rejection
            self._world.agents.mark_token_dead(rejection.agent_id, rejection.device_id, report.token)
        if report.partition in self._owned:
            self._reports[report.partition].append(report)

    def _refresh_gauges(self) -> None:
        stores = [owned.store for owned in self._owned.values()]
        self._metrics.pending_rounds.set(sum(store.pending_count for store in stores))
        self._metrics.pending_timers.set(sum(store.timer_count for store in stores))
        self._metrics.owned_partitions.set(len(stores))

    async def _acquire(self, partitions: list[int]) -> None:
        """Take partitions over; the worker reports not-ready until all are restored."""
        self._restoring = True
        try:
            for partition in sorted(partitions):
                if partition not in self._owned:
                    await self._restore(partition)
        finally:
            self._restoring = False
        gc.freeze()  # restored rounds are long-lived: keep them out of the collector's full passes
        self._assigned = True
        self._refresh_gauges()

    async def _restore(self, partition: int) -> None:
        started = self._clock.monotonic()
        producer = await start_partition_producer(self._settings, partition)
        try:
            store = await restore_partition(self._settings, partition)
        except BaseException:
            await producer.stop()
            raise
        self._owned[partition] = _Owned(store, producer)
        self._metrics.restore_seconds.observe(self._clock.monotonic() - started)
        log.info(
            "partition_restored",
            partition=partition,
            pending_rounds=store.pending_count,
            chats=store.chat_count,
            seconds=round(self._clock.monotonic() - started, 3),
        )
        for job in self._step.resume(store, self._clock.now_ms()):
            self.fan_out.submit(partition, job)

    async def _release(self, partition: int) -> None:
        owned = self._owned.pop(partition, None)
        self._reports.pop(partition, None)
        await self.fan_out.cancel_partition(partition)
        if owned is not None:
            try:
                await owned.producer.stop()
            except KafkaError as error:
                log.warning("producer_stop_failed", partition=partition, error=repr(error))
        log.info("partition_released", partition=partition)

    async def _reset(self, consumer: AIOKafkaConsumer, partition: int) -> None:
        """After a failed transaction: rebuild the partition from what Kafka committed."""
        await self._release(partition)
        tp = TopicPartition(self._settings.topic_chat_events, partition)
        if tp not in consumer.assignment():
            return
        await self._acquire([partition])
        committed = await consumer.committed(tp)
        if committed is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """The single place where partition ownership changes."""

    def __init__(self, worker: ChatWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._worker._lock:  # noqa: SLF001 -- the listener is part of the worker
            for tp in revoked:
                await self._worker._release(tp.partition)  # noqa: SLF001

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        async with self._worker._lock:  # noqa: SLF001
            await self._worker._acquire([tp.partition for tp in assigned])  # noqa: SLF001


async def _send(producer: AIOKafkaProducer, record: OutRecord) -> asyncio.Future[object]:
    future: asyncio.Future[object] = await producer.send(
        record.topic,
        value=record.value,
        key=record.key,
        partition=record.partition,
        headers=list(record.headers) or None,
    )
    return future
