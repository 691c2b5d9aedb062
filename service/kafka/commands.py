"""The commands consumer: answers `livechat.push.test_requested` with a test push and a
`livechat.push.test_result` on the push-feedback topic.

At least once, and each command answered once in normal operation:

* The workers share the consumer group `<group_id>-commands`, so each command partition (key =
  agent id) is read by one worker: one command, one answer — not one per worker.
* A batch's offsets are committed only after its answers (and dead letters, and `token_rejected`
  events) were written. A crash in between answers those commands again on restart (at least
  once); the answer's CloudEvents id derives from the command's, so a reader can drop the copy.
* A rebalance waits for the batch being answered (the listener takes the loop's lock), so the
  batch is committed before its partitions move and the new owner does not answer it again.
* A command id this worker answered recently (a replay, a producer's retry) gets no second push or
  answer (`test_push_replayed` is logged): the first answer is on the topic.
* A command older than `COMMAND_MAX_AGE_MS` when read is not answered (`test_push_expired`).

An unusable command is dead-lettered like other input (`command_rejected`,
`notifier_events_rejected_total{topic=<commands topic>}`), and the loop carries on.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from service.clock import Clock
from service.domain.decide import on_token_rejected
from service.domain.directory import AgentDirectory
from service.domain.effects import EmitTokenRejected
from service.kafka.connection import client_options
from service.kafka.polling import RetryPause
from service.observability.metrics import Metrics
from service.partition.records import ConsumedRecord, OutRecord
from service.partition.rejections import RejectionReporter, count_rejected
from service.push.test_push import TEST_PUSH_TTL_MS, TEST_RETRY, TestPusher
from service.settings import Settings
from service.wire.commands import TEST_REQUESTED, TestPushRequested, decode_command, encode_test_result
from service.wire.envelope import DecodeLimits, decode_key
from service.wire.outbound import encode_token_rejected
from service.wire.rejection import Reason, Rejection

log = structlog.get_logger(__name__)

COMMANDS_PER_BATCH = 50
"""Commands answered concurrently at most (each waits for its pushes: seconds, not milliseconds)."""
REMEMBERED_COMMANDS = 10_000
"""Command ids remembered to drop a replay (about 1 MB); a replay older than that is answered again."""
POLL_TIMEOUT_MS = 500
COMMAND_MAX_AGE_MS = TEST_PUSH_TTL_MS
"""A command older than this (by its record's timestamp) is not answered: whoever asked gave up long
ago (the app, `test-push`: a minute), and the test alert would buzz a phone out of the blue."""


def rebalance_timeout_ms(settings: Settings) -> int:
    """How long the group waits for this member to rejoin: longer than a batch can take (every
    attempt of a test push timing out, with the backoff between), so that a rebalance waits for the
    batch being answered instead of evicting the member and having the batch answered twice."""
    attempts = TEST_RETRY.max_attempts
    batch_s = attempts * settings.push_timeout_seconds + (attempts - 1) * TEST_RETRY.cap_s
    return max(settings.kafka_session_timeout_ms, int(batch_s * 1000) + 5_000)


def commands_group(settings: Settings) -> str:
    return f"{settings.group_id}-commands"


@dataclass(frozen=True, slots=True)
class _Answered:
    """What one command led to: the records to write, and what to note once they are written."""

    outputs: list[OutRecord]
    rejected: Reason | None = None
    answered: bool = False


class _FinishBatchFirst(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions move only between batches: the batch being answered is committed first."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:
            log.info("commands_revoked", partitions=sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("commands_assigned", partitions=sorted(tp.partition for tp in assigned))


class TestPushCommands:
    """Consumes the commands topic and answers each command (see the module docstring)."""

    __test__ = False

    def __init__(
        self,
        settings: Settings,
        agents: AgentDirectory,
        pusher: TestPusher,
        metrics: Metrics,
        clock: Clock,
        limits: DecodeLimits,
    ) -> None:
        self._settings = settings
        self._agents = agents
        self._pusher = pusher
        self._metrics = metrics
        self._clock = clock
        self._limits = limits
        self._rejections = RejectionReporter(
            settings.topic_dead_letter, "command_rejected", settings.dead_letter_redact_personal_data
        )
        self._answered: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        settings = self._settings
        consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=commands_group(settings),
            enable_auto_commit=False,
            isolation_level="read_committed",
            # A new group reads what was asked before it first joined: nothing asked is lost.
            auto_offset_reset="earliest",
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(1000, settings.kafka_session_timeout_ms // 4),
            rebalance_timeout_ms=rebalance_timeout_ms(settings),
        )
        consumer.subscribe([settings.topic_commands], listener=_FinishBatchFirst(self._lock))
        producer = AIOKafkaProducer(**client_options(settings), enable_idempotence=True, acks="all")
        await consumer.start()
        await producer.start()
        poll_failures = RetryPause()
        try:
            while not self._stopping.is_set():
                try:
                    batches = await consumer.getmany(
                        timeout_ms=POLL_TIMEOUT_MS, max_records=COMMANDS_PER_BATCH
                    )
                except KafkaError as error:
                    delay = poll_failures.failed()
                    log.warning("commands_poll_failed", error=repr(error), retry_in_s=delay)
                    await asyncio.sleep(delay)
                    continue
                poll_failures.succeeded()
                if batches:
                    async with self._lock:
                        await self._answer_batch(consumer, producer, batches)
        finally:
            # Not under the lock: stopping waits for a rebalance in progress, which waits for the lock.
            await consumer.stop()
            await producer.stop()

    async def _answer_batch(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        batches: dict[TopicPartition, list[ConsumedRecord]],
    ) -> None:
        """Answer every command of the batch, write the answers, then commit the batch's offsets."""
        records = [record for partition_records in batches.values() for record in partition_records]
        answers = await asyncio.gather(*(self._answer(record) for record in records))
        if not await self._write(producer, [output for answer in answers for output in answer.outputs]):
            return  # stopping: not committed, so the next owner answers the batch (at least once)
        for record, answer in zip(records, answers, strict=True):
            if answer.rejected is not None:
                count_rejected(self._metrics, record.topic, answer.rejected)
            if answer.answered:
                self._metrics.events_consumed.labels(TEST_REQUESTED).inc()
        offsets = {tp: partition_records[-1].offset + 1 for tp, partition_records in batches.items()}
        try:
            await consumer.commit(offsets)
        except KafkaError as error:  # evicted from the group: the new owner answers these again
            log.warning("commands_commit_failed", error=repr(error))

    async def _answer(self, record: ConsumedRecord) -> _Answered:
        """The records that answer one command: a dead letter, or the result (after the pushes)
        and a `token_rejected` event per token a provider declared dead; none for a replay."""
        command = decode_command(record.key, record.value, self._limits)
        if isinstance(command, Rejection):
            agent_id = command.agent_id or decode_key(record.key)
            return _Answered([self._rejections.reject(record, command, agent_id=agent_id)], command.reason)
        key = (command.agent_id, command.request_id)
        if key in self._answered:
            log.info("test_push_replayed", request_id=command.request_id, agent_id=command.agent_id)
            return _Answered([])
        # Remembered before the first await: a copy in the same batch (answered concurrently) is
        # dropped too. If the answer is then not written, the worker is stopping and forgets it.
        self._remember(key)
        age_ms = self._clock.now_ms() - record.timestamp
        if age_ms > COMMAND_MAX_AGE_MS:  # read after an outage, a lag or an offset reset
            log.info(
                "test_push_expired", request_id=command.request_id, agent_id=command.agent_id, age_ms=age_ms
            )
            return _Answered([])
        answer = await self._pusher.answer(self._agents, command)
        now_ms = self._clock.now_ms()
        outputs = [self._result(command, encode_test_result(command, answer.devices, self._source, now_ms))]
        for rejection, token in answer.rejections:
            # Like a real alert's rejection: no push uses the token until a newer snapshot lists it.
            self._agents.mark_token_dead(rejection.agent_id, rejection.device_id, token)
            effects = on_token_rejected(rejection, now_ms)
            outputs.extend(self._token_rejected(e) for e in effects if isinstance(e, EmitTokenRejected))
        return _Answered(outputs, answered=True)

    @property
    def _source(self) -> str:
        return self._settings.event_source

    def _result(self, command: TestPushRequested, value: bytes) -> OutRecord:
        return OutRecord(self._settings.topic_push_feedback, command.agent_id.encode(), value)

    def _token_rejected(self, effect: EmitTokenRejected) -> OutRecord:
        value = encode_token_rejected(effect, self._source)
        return OutRecord(self._settings.topic_push_feedback, effect.agent_id.encode(), value)

    def _remember(self, key: tuple[str, str]) -> None:
        self._answered[key] = None
        if len(self._answered) > REMEMBERED_COMMANDS:
            self._answered.popitem(last=False)

    async def _write(self, producer: AIOKafkaProducer, outputs: Iterable[OutRecord]) -> bool:
        """Write every output, retrying until the broker took them all; False if stopping first."""
        pending = list(outputs)
        failures = RetryPause()
        while not self._stopping.is_set():
            try:
                futures = [
                    await producer.send(
                        out.topic, value=out.value, key=out.key, headers=list(out.headers) or None
                    )
                    for out in pending
                ]
                await asyncio.gather(*futures)
            except KafkaError as error:
                delay = failures.failed()
                log.warning("commands_write_failed", error=repr(error), retry_in_s=delay)
                await asyncio.sleep(delay)
                continue
            return True
        return False
