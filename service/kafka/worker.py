"""The chat-events worker: one consumer loop over the partitions this worker owns.

Each loop turn polls, then runs one step per owned partition that has records, fan-out reports
or due timers, inside that partition's transaction, in this order (the commit order):
  consumed offset (send_offsets_to_transaction) -> changelog writes + output events -> commit.
The order inside a transaction does not change what commits together; offsets go first because the
broker refuses a transaction's first request while the previous commit's markers are still being
written (CONCURRENT_TRANSACTIONS), and aiokafka retries a refused AddOffsetsToTxn after
`retry_backoff_ms` (20 ms, transactions.py) but a refused AddPartitionsToTxn after a fixed 20 ms
whatever the setting: measured with 4 partitions committing back to back, offsets first cut the
commit's p90 from 17-26 ms to ~9 ms and its p99 from ~30 to ~20 ms.
Only after the commit are pushes started and metrics counted, so neither ever reflects a change
that was rolled back. If a transaction fails, the partition is dropped and taken over again
(restored from the changelog, consumer sought back to the committed offset) — see ownership.py.

The worker reports ready only while it can make progress: every assigned partition is owned,
and each owned partition got a fetch response from the broker recently.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError, ProducerFenced

from service.clock import Clock
from service.domain.deadlines import PartitionProgress, fire_horizon_ms
from service.domain.decide import World
from service.domain.effects import MissedWhen
from service.domain.reports import DeviceRejected, FanOutReport
from service.kafka.connection import client_options
from service.kafka.ownership import OwnedPartition, Ownership
from service.kafka.step import LOG_APPEND_TIME, ConsumedRecord, OutRecord, PartitionStep, StepResult
from service.observability.metrics import Metrics
from service.push.fanout import FanOut
from service.settings import Settings

log = structlog.get_logger(__name__)

IDLE_POLL_MS = 250
"""Longest poll when no timer is near: bounds how late fan-out reports are recorded."""
COMMIT_TIMEOUT_S = 30.0
"""Longest a partition's transaction may take before it counts as failed (broker timeout: 60 s)."""
FETCH_MAX_WAIT_MS = 20
"""How long the broker may hold a fetch for data. aiokafka sends one fetch per broker at a time
and leaves out partitions with records still buffered, so a partition drained by a turn waits
for the fetch in flight to return, up to the default 500 ms. Producer to `read_committed`
consumer at 200 records/s measured p50 2.2 / p99 9.2 ms with 500 and 1.8 / 5.3 ms with 20; the
cost is ~50 empty fetches/s per broker when idle."""
POSITION_WAIT_S = 0.05
BACKPRESSURE_MAX_HOLD_S = 60.0
"""Longest the fan-out's backpressure keeps the loop from taking records (well below aiokafka's
`max_poll_interval_ms`, 300 s, after which the consumer would leave the group)."""
STALL_AFTER_MS = 5_000
"""An owned partition without a fetch response for this long means the worker cannot progress."""


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
        self._reports: defaultdict[int, list[FanOutReport]] = defaultdict(list)
        self._sites_changed: set[str] = set()
        self._clock_tolerance_ms = settings.producer_clock_tolerance_seconds * 1000
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._last_turn = clock.monotonic()
        self.fan_out = fan_out_factory(self._on_report)
        self.ownership = Ownership(settings, metrics, clock, self.fan_out, self._step.resume)

    @property
    def ready(self) -> bool:
        """Partitions assigned, all owned and restored, the loop turning, the broker answering fetches."""
        if not self.ownership.settled or self._consumer is None:
            return False
        if self._clock.monotonic() - self._last_turn > (STALL_AFTER_MS + IDLE_POLL_MS) / 1000:
            return False  # the consumer loop itself is stuck, whatever the fetcher does
        now_ms = self._clock.now_ms()
        assigned = self._consumer.assignment()
        for partition in self.ownership.owned:
            tp = self.ownership.topic_partition(partition)
            polled = self._consumer.last_poll_timestamp(tp) if tp in assigned else None
            if polled is None or now_ms - polled > STALL_AFTER_MS:
                return False
        return True

    @property
    def owned_partitions(self) -> list[int]:
        return sorted(self.ownership.owned)

    def stop(self) -> None:
        self._stopping.set()

    def sites_changed(self, site_ids: Iterable[str]) -> None:
        """The directory feed's hook: these sites may have gained eligible devices; their
        pending rounds are looked at in the next turn."""
        self._sites_changed.update(site_ids)

    async def run(self) -> None:
        settings = self._settings
        consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=settings.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(1000, settings.kafka_session_timeout_ms // 4),
        )
        self._consumer = consumer
        consumer.subscribe([settings.topic_chat_events], listener=_Rebalance(self, consumer))
        await consumer.start()
        try:
            while not self._stopping.is_set():
                try:
                    batches = await self._fetch_unless_saturated(consumer)
                except KafkaError as error:
                    log.warning("poll_failed", error=repr(error))
                    await asyncio.sleep(0.5)
                    continue
                async with self._lock:
                    await self.ownership.retry_pending(consumer)
                    await self._turn(consumer, batches)
                self._last_turn = self._clock.monotonic()
        finally:
            await self._shut_down(consumer)

    _saturated_since: float | None = None
    """Monotonic time the fan-out's backpressure began holding the consumer (None: not holding)."""

    async def _fetch_unless_saturated(
        self, consumer: AIOKafkaConsumer
    ) -> dict[TopicPartition, list[ConsumedRecord]]:
        """The next records; none while the fan-out's push queue is saturated (backpressure).

        While saturated, wait for the queue to drain for at most the usual poll timeout, then
        turn without records: reports are committed and due timers fire, but no new chat event is
        taken. Not calling `getmany` loses nothing (the position stays where it is and aiokafka
        buffers at most one fetch per partition), and unlike `consumer.pause` the fetcher keeps
        fetching partitions with nothing buffered, so their last stable offset stays current: a
        paused partition keeps a stale one and could look caught up to the deadline gate while an
        `agent_joined` waits unread. aiokafka leaves the group after `max_poll_interval_ms`
        (300 s) without a `getmany`, so one batch is taken every `BACKPRESSURE_MAX_HOLD_S` anyway.
        """
        if self.fan_out.saturated:
            now = self._clock.monotonic()
            self._saturated_since = self._saturated_since or now
            held_too_long = now - self._saturated_since >= BACKPRESSURE_MAX_HOLD_S
            if not held_too_long and not await self.fan_out.wait_unsaturated(self._poll_timeout_ms() / 1000):
                return {}
        self._saturated_since = None
        return dict(
            await consumer.getmany(
                timeout_ms=self._poll_timeout_ms(), max_records=self._settings.kafka_max_batch_records
            )
        )

    async def _shut_down(self, consumer: AIOKafkaConsumer) -> None:
        """Let fan-outs finish, commit what they reported, leave the group, release partitions."""
        await self.fan_out.close(self._settings.shutdown_grace_seconds / 2)
        async with self._lock:
            try:
                await self._turn(consumer, {})
            except KafkaError as error:
                log.warning("final_commit_failed", error=repr(error))
        # Not under the lock: stopping the consumer waits for a rebalance in progress, and that
        # waits for our rebalance listener, which needs the lock (a deadlock the zombie test found).
        await consumer.stop()
        async with self._lock:
            for partition in list(self.ownership.owned):
                await self.ownership.release(partition)

    def _poll_timeout_ms(self) -> int:
        now = self._clock.now_ms()
        due = [owned.store.next_due_ms() for owned in self.ownership.owned.values()]
        nearest = min((d for d in due if d is not None), default=None)
        if nearest is None:
            return IDLE_POLL_MS
        return max(1, min(IDLE_POLL_MS, nearest - now))

    async def _turn(
        self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[ConsumedRecord]]
    ) -> None:
        """Step every owned partition, then commit their transactions concurrently.

        Each partition has a producer of its own, so the transactions are independent; committed
        one after another, a deadline or a push due in the last partition waited for all the
        others' broker round trips (p99 lateness 310 ms at 11k events/s over 4 partitions).
        """
        steps: list[tuple[int, TopicPartition, OwnedPartition, StepResult]] = []
        # A partition whose transaction then fails loses these; its restore resumes every round
        # by the eligibility of that moment, so no site change is lost.
        sites_changed, self._sites_changed = self._sites_changed, set()
        for partition, owned in list(self.ownership.owned.items()):
            tp = self.ownership.topic_partition(partition)
            result = await self._step_partition(consumer, tp, owned, batches.get(tp, []), sites_changed)
            if not result.empty:
                steps.append((partition, tp, owned, result))
        # A TaskGroup: a bug (anything but a Kafka error or timeout) cancels the other commits and
        # ends the loop, as it did when commits ran one by one.
        async with asyncio.TaskGroup() as group:
            commits = [
                (partition, group.create_task(self._commit_then_push(partition, owned.producer, tp, result)))
                for partition, tp, owned, result in steps
            ]
        for partition, commit in commits:
            error = commit.result()
            if error is None:
                continue
            self._metrics.transactions.labels("aborted").inc()
            if isinstance(error, ProducerFenced):
                log.warning("producer_fenced", partition=partition)
                await self.ownership.lose(consumer, partition, fenced=True)
            else:
                log.warning("transaction_failed", partition=partition, error=repr(error))
                await self.ownership.lose(consumer, partition, fenced=False)
        self._refresh_gauges()

    async def _commit_then_push(
        self, partition: int, producer: AIOKafkaProducer, tp: TopicPartition, result: StepResult
    ) -> KafkaError | TimeoutError | None:
        """Commit one partition's transaction and start its pushes at once; the error if it failed."""
        try:
            await self._commit(producer, tp, result)
        except (KafkaError, TimeoutError) as error:
            return error
        self._after_commit(partition, result)
        return None

    async def _step_partition(
        self,
        consumer: AIOKafkaConsumer,
        tp: TopicPartition,
        owned: OwnedPartition,
        records: list[ConsumedRecord],
        sites_changed: set[str],
    ) -> StepResult:
        if records:
            owned.read_up_to_ms = max(owned.read_up_to_ms, *map(self._trusted_time, records))
        # The position, not the last record's offset + 1: the consumer steps over transaction
        # markers, which occupy offsets, so only the position can reach the stable offset.
        position = await _position_now(consumer, tp)
        # A member the group just dropped has no assignment until it re-joins (aiokafka then
        # asserts on these getters); such a partition is simply not known to be caught up.
        assigned = tp in consumer.assignment()
        caught_up = (
            assigned
            and position is not None
            and owned.observe(position, consumer.last_stable_offset(tp), consumer.last_poll_timestamp(tp))
        )
        progress = PartitionProgress(caught_up, owned.read_up_to_ms, owned.stable_read_ms)
        reports = self._reports.pop(tp.partition, [])
        now = self._clock.now_ms()
        return self._step.run(
            owned.store, records, reports, fire_horizon_ms(now, progress), now, sites_changed
        )

    def _trusted_time(self, record: ConsumedRecord) -> int:
        """What a record's timestamp proves about the partition's progress: the broker's append
        time as it is; a producer's CreateTime less the tolerance for its clock running ahead
        (a record stamped in the future by a fast clock must not let deadlines fire while events
        stamped correctly before them are still unread)."""
        if record.timestamp_type == LOG_APPEND_TIME:
            return record.timestamp
        return record.timestamp - self._clock_tolerance_ms

    async def _commit(self, producer: AIOKafkaProducer, tp: TopicPartition, result: StepResult) -> None:
        # Bounded: a producer that lost its coordinator (or was fenced mid-send) must not hold the
        # loop, and with it the rebalance listener, forever; a timeout counts as a failed transaction.
        async with asyncio.timeout(COMMIT_TIMEOUT_S):
            async with producer.transaction():
                if result.next_offset is not None:
                    await producer.send_offsets_to_transaction(
                        {tp: result.next_offset}, self._settings.group_id
                    )
                futures = [await _send(producer, record) for record in result.records]
            await asyncio.gather(*futures)
        self._metrics.transactions.labels("committed").inc()

    def _after_commit(self, partition: int, result: StepResult) -> None:
        metrics = self._metrics
        for event_type in result.consumed_types:
            metrics.events_consumed.labels(event_type).inc()
        for topic, reason in result.rejected:
            metrics.events_rejected.labels(topic, reason.value).inc()
        for event_type, repair in result.repaired:
            metrics.fields_repaired.labels(event_type, repair.field, repair.action).inc()
        for why in result.ignored:
            metrics.events_ignored.labels(why).inc()
        metrics.rounds_started.inc(result.started)
        for note in result.noted:
            metrics.rounds_degraded.labels(note.why.value).inc()
            log.warning(
                "round_degraded",
                why=note.why.value,
                chat_id=note.chat_id,
                site_id=note.site_id,
                partition=partition,
            )
        for closed in result.closed:
            metrics.rounds_closed.labels(closed.outcome.value).inc()
            if closed.missed_when is not None:
                metrics.rounds_missed.labels(closed.missed_when.value).inc()
            if closed.missed_when in (MissedWhen.IN_TIME, MissedWhen.LATE):
                # Rounds that expired before the worker read their request say nothing of its timers.
                metrics.deadline_lateness.observe(closed.lateness_ms / 1000)
            # Missed rounds at info; joins and ends (the normal case, thousands a second at full
            # load, ~10% of the worker's CPU when logged) at debug.
            log_closed = log.info if closed.outcome.value == "missed" else log.debug
            log_closed(
                "round_closed",
                chat_id=closed.chat_id,
                site_id=closed.site_id,
                partition=partition,
                outcome=closed.outcome.value,
                lateness_ms=closed.lateness_ms,
                missed_when=closed.missed_when.value if closed.missed_when else None,
            )
        for job in result.pushes:
            self.fan_out.submit(partition, job)

    def _on_report(self, report: FanOutReport) -> None:
        if isinstance(report, DeviceRejected):
            rejection = report.rejection
            self._world.agents.mark_token_dead(rejection.agent_id, rejection.device_id, report.token)
        if report.partition in self.ownership.owned:
            self._reports[report.partition].append(report)

    def _refresh_gauges(self) -> None:
        stores = [owned.store for owned in self.ownership.owned.values()]
        self._metrics.pending_rounds.set(sum(store.pending_count for store in stores))
        self._metrics.pending_timers.set(sum(store.timer_count for store in stores))
        self._metrics.consumer_lag.set(sum(owned.lag for owned in self.ownership.owned.values()))
        self._metrics.owned_partitions.set(len(stores))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands ownership changes to `Ownership`, serialised with the consumer loop's turns."""

    def __init__(self, worker: ChatWorker, consumer: AIOKafkaConsumer) -> None:
        self._worker = worker
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._worker._lock:  # noqa: SLF001 -- the listener is part of the worker
            await self._worker.ownership.revoke([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        async with self._worker._lock:  # noqa: SLF001
            await self._worker.ownership.assign(self._consumer, [tp.partition for tp in assigned])
            self._worker._refresh_gauges()  # noqa: SLF001


async def _position_now(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The consumer's position, or None if it is not known right now.

    Never wait for it: during a rebalance `position()` waits for the new assignment, which waits for
    our rebalance listener, which waits for the turn holding the lock — a deadlock seen in the
    zombie test (a SIGSTOP'd worker resumed and then hung, reporting ready, until killed).
    """
    try:
        return int(await asyncio.wait_for(consumer.position(tp), POSITION_WAIT_S))
    except (TimeoutError, IllegalStateError):
        return None


async def _send(producer: AIOKafkaProducer, record: OutRecord) -> asyncio.Future[object]:
    future: asyncio.Future[object] = await producer.send(
        record.topic,
        value=record.value,
        key=record.key,
        partition=record.partition,
        headers=list(record.headers) or None,
    )
    return future
