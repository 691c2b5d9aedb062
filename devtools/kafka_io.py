"""Kafka clients for tests and the demo: a plain publisher (as other teams' services would write)
and a `read_committed` reader of the worker's outputs that tests and the demo can wait on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from service.kafka.topics import ensure_topics
from service.settings import Settings


def isolated_names(prefix: str) -> dict[str, str]:
    """Settings naming a consumer group and every topic after `prefix`, so runs sharing one broker
    (tests, benchmarks, chaos runs) never see each other's records."""
    return {
        "group_id": f"{prefix}-notifier",
        "topic_chat_events": f"{prefix}.chat-events",
        "topic_agents": f"{prefix}.agents",
        "topic_sites": f"{prefix}.sites",
        "topic_missed": f"{prefix}.chat-missed",
        "topic_chatbot": f"{prefix}.chatbot-commands",
        "topic_push_feedback": f"{prefix}.push-feedback",
        "topic_dead_letter": f"{prefix}.dead-letter",
        "topic_changelog": f"{prefix}.changelog",
        "topic_commands": f"{prefix}.notifier-commands",
    }


async def isolated_settings(bootstrap: str, prefix: str, partitions: int, **overrides: Any) -> Settings:
    """Settings for a worker on `bootstrap` with the group and topics of `isolated_names(prefix)`,
    served on a free local port, the topics created with `partitions` partitions. Overrides win."""
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        **isolated_names(prefix),
        "http_host": "127.0.0.1",
        "http_port": 0,
        "shutdown_grace_seconds": 5.0,
    }
    values.update(overrides)
    settings = Settings(**values)
    await ensure_topics(settings, partitions, 1)
    return settings


class Publisher:
    """A plain producer, as other teams' services would use."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic: str, key: str, value: bytes | None, timestamp_ms: int | None = None) -> None:
        """`timestamp_ms`: the record's CreateTime, as a producer with that clock would stamp it
        (a LogAppendTime topic replaces it with the broker's time)."""
        await self._producer.send_and_wait(topic, value=value, key=key.encode(), timestamp_ms=timestamp_ms)


@dataclass(frozen=True)
class Output:
    topic: str
    key: str | None
    value: dict[str, Any] | None
    headers: dict[str, bytes]
    raw: bytes | None = None
    """The value's bytes as written (dead letters are compared byte for byte)."""


class BackgroundReader:
    """A consumer read by a task of its own from `start` to `stop`; a subclass keeps what it needs
    of each non-empty fetch (`_take`) and may wake its waiters (`_taken`)."""

    def __init__(self, consumer: AIOKafkaConsumer, poll_ms: int) -> None:
        self._consumer = consumer
        self._poll_ms = poll_ms
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=self._poll_ms)
            if batches:
                self._take(batches)
                await self._taken()

    def _take(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        raise NotImplementedError

    async def _taken(self) -> None:
        """After `_take`: nothing by default."""


class OutputReader(BackgroundReader):
    """Reads output topics as a downstream `read_committed` consumer and keeps what it saw."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            group_id=None,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        super().__init__(consumer, poll_ms=200)
        self.seen: list[Output] = []
        self._changed = asyncio.Condition()

    def _take(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        for records in batches.values():
            for record in records:
                value = None if record.value is None else _json_or_raw(record.value)
                key = record.key.decode(errors="replace") if record.key is not None else None
                headers = dict(record.headers or ())
                self.seen.append(Output(record.topic, key, value, headers, record.value))

    async def _taken(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def on(self, topic: str, key: str | None = None) -> list[Output]:
        return [o for o in self.seen if o.topic == topic and (key is None or o.key == key)]

    # The timeout is a parameter (like asyncio.wait_for) so that no caller can forget to bound a wait.
    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 30.0,  # noqa: ASYNC109
        what: str = "",
    ) -> None:
        """Wait until `predicate()` holds for what was read; fail with a message after `timeout`."""

        async def waiting() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        try:
            await asyncio.wait_for(waiting(), timeout)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}") from None


def _json_or_raw(value: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):  # dead letters hold anything, e.g. JSON nested 5,000 deep
        return {"_raw": value}
    return parsed if isinstance(parsed, dict) else {"_raw": value}
