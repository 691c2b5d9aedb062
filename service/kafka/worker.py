"""The chat-events worker: one consumer loop over the partitions this worker owns.

Each loop turn polls, then runs one step per owned partition that has records, fan-out reports
or due timers (service/partition/step.py), and commits each partition's step in that partition's
own transaction (commit.py), the partitions concurrently. Only after a commit are the step's
pushes started and its metrics counted (service/partition/report.py), so neither ever reflects a
change that was rolled back. If a transaction fails, the partition is dropped and taken over again
(restored from the changelog, consumer sought back to the committed offset): see ownership.py.

The parts: `Ownership` (which partitions, their lifecycle), `Rebalance` (the group's listener),
`ReadProgress` (the deadline gate's inputs), `readiness.ready`, `polling.poll_timeout_ms`,
`commit_step`, `report_committed`, `FanOutInbox` (reports back from the fan-out). This module
only runs the loop and wires them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError, ProducerFenced

from service.clock import Clock
from service.domain.deadlines import fire_horizon_ms
from service.domain.decide import World
from service.domain.reports import FanOutReport
from service.kafka import readiness
from service.kafka.commit import commit_step
from service.kafka.connection import client_options
from service.kafka.ownership import OwnedPartition, Ownership
from service.kafka.polling import FETCH_MAX_WAIT_MS, RetryPause, poll_timeout_ms
from service.kafka.progress import Fetched
from service.kafka.rebalance import Rebalance
from service.observability.metrics import Metrics
from service.partition.inbox import FanOutInbox
from service.partition.records import ConsumedRecord
from service.partition.report import report_committed
from service.partition.step import PartitionStep, StepResult
from service.push.fanout import FanOut
from service.settings import Settings
from service.state.store import PartitionStore

log = structlog.get_logger(__name__)

POSITION_WAIT_S = 0.05
BACKPRESSURE_MAX_HOLD_S = 60.0
"""Longest the fan-out's backpressure keeps the loop from taking records (well below aiokafka's
`max_poll_interval_ms`, 300 s, after which the consumer would leave the group)."""


class ChatWorker:
    """Consumes chat events and runs the per-partition steps: polls, steps and commits every owned
    partition each turn, starts the committed pushes, and reports ready while it progresses.

    Every turn and every ownership change run under one lock (`_turn_lock`), so a rebalance never
    lands in the middle of a turn."""

    def __init__(
        self,
        settings: Settings,
        world: World,
        metrics: Metrics,
        clock: Clock,
        fan_out_factory: Callable[[Callable[[FanOutReport], None]], FanOut],
        step: PartitionStep,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._step = step
        self._sites_changed: set[str] = set()
        self._clock_tolerance_ms = settings.producer_clock_tolerance_seconds * 1000
        self._turn_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._last_turn = clock.monotonic()
        self._saturated_since: float | None = None
        """Monotonic time the fan-out's backpressure began holding the consumer (None: not holding)."""
        self._inbox = FanOutInbox(world.agents, lambda partition: partition in self.ownership.owned)
        self.fan_out = fan_out_factory(self._inbox.receive)
        self.ownership = Ownership(settings, metrics, clock, self.fan_out.cancel_partition, self._resume)

    @property
    def ready(self) -> bool:
        """Partitions assigned, all owned and restored, the loop turning, the broker answering fetches."""
        consumer = self._consumer
        if consumer is None:
            return False
        return readiness.ready(
            settled=self.ownership.settled,
            seconds_since_turn=self._clock.monotonic() - self._last_turn,
            now_ms=self._clock.now_ms(),
            last_fetch_ms=self._last_fetches(consumer),
            holding_for_pushes=self._saturated_since is not None,
        )

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
        consumer.subscribe(
            [settings.topic_chat_events], listener=Rebalance(self.ownership, consumer, self._turn_lock)
        )
        await consumer.start()
        poll_failures = RetryPause()
        try:
            while not self._stopping.is_set():
                try:
                    batches = await self._fetch_unless_saturated(consumer)
                except KafkaError as error:
                    delay = poll_failures.failed()
                    log.warning("poll_failed", error=repr(error), retry_in_s=delay)
                    await asyncio.sleep(delay)
                    continue
                poll_failures.succeeded()
                turn_started = self._clock.monotonic()
                async with self._turn_lock:
                    await self.ownership.retry_pending(consumer)
                    await self._turn(consumer, batches)
                self._last_turn = self._clock.monotonic()
                self._metrics.turn_seconds.observe(self._last_turn - turn_started)
        finally:
            await self._shut_down(consumer)

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
        async with self._turn_lock:
            try:
                await self._turn(consumer, {})
            except KafkaError as error:
                log.warning("final_commit_failed", error=repr(error))
        # Not under the lock: stopping the consumer waits for a rebalance in progress, and that
        # waits for our rebalance listener, which needs the lock (a deadlock the zombie test found).
        await consumer.stop()
        async with self._turn_lock:
            for partition in list(self.ownership.owned):
                await self.ownership.release(partition)

    def _poll_timeout_ms(self) -> int:
        due = (owned.store.next_due_ms() for owned in self.ownership.owned.values())
        return poll_timeout_ms(self._clock.now_ms(), due)

    def _last_fetches(self, consumer: AIOKafkaConsumer) -> Iterator[int | None]:
        """When each owned partition's last fetch response arrived (None: not assigned now)."""
        assigned = consumer.assignment()
        for partition in self.ownership.owned:
            tp = self.ownership.topic_partition(partition)
            yield consumer.last_poll_timestamp(tp) if tp in assigned else None

    def _resume(self, partition: int, store: PartitionStore) -> None:
        """`Ownership`'s hook once a partition is restored: push what a crash interrupted."""
        for job in self._step.resume(store, self._clock.now_ms()):
            self.fan_out.submit(partition, job)

    async def _turn(
        self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[ConsumedRecord]]
    ) -> None:
        """Step every owned partition, then commit their transactions concurrently.

        Each partition has a producer of its own, so the transactions are independent; committed
        one after another, a deadline or a push due in the last partition waited for all the
        others' broker round trips (docs/benchmarks.md, "Transactions and the turn").
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
                (partition, group.create_task(self._commit_then_push(partition, owned, tp, result)))
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
        self.ownership.refresh_gauges()

    async def _commit_then_push(
        self, partition: int, owned: OwnedPartition, tp: TopicPartition, result: StepResult
    ) -> KafkaError | TimeoutError | None:
        """Commit one partition's transaction and start its pushes at once; the error if it failed."""
        try:
            await commit_step(owned.producer, tp, self._settings.group_id, result)
        except (KafkaError, TimeoutError) as error:
            return error
        self._metrics.transactions.labels("committed").inc()
        report_committed(self._metrics, partition, result)
        for job in result.pushes:
            self.fan_out.submit(partition, job)
        return None

    async def _step_partition(
        self,
        consumer: AIOKafkaConsumer,
        tp: TopicPartition,
        owned: OwnedPartition,
        records: list[ConsumedRecord],
        sites_changed: set[str],
    ) -> StepResult:
        fetched: Fetched | None = None
        position = await _position_now(consumer, tp)
        # A member the group just dropped has no assignment until it re-joins (aiokafka then
        # asserts on these getters); such a partition is simply not known to be caught up.
        if position is not None and tp in consumer.assignment():
            fetched = Fetched(position, consumer.last_stable_offset(tp), consumer.last_poll_timestamp(tp))
        progress = owned.progress.advance(records, fetched, self._clock_tolerance_ms)
        now = self._clock.now_ms()
        reports = self._inbox.take(tp.partition)
        return self._step.run(
            owned.store, records, reports, fire_horizon_ms(now, progress), now, sites_changed
        )


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
