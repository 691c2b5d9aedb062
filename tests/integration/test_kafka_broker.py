"""The real-Kafka harness (devtools.kafka_broker) against aiokafka: topics, transactions, crash and restart.

These also pin down what the worker relies on from aiokafka 0.14 against a Kafka 4.x broker: its
v0-only transaction requests (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit,
EndTxn) work, aborted records stay invisible to ``read_committed`` readers, and committed data and
group offsets survive a SIGKILL of the broker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from devtools.kafka_broker import KafkaBroker
from devtools.kafka_process import metadata_broker_ids

pytestmark = pytest.mark.kafka

TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    kafka = KafkaBroker()
    try:
        kafka.start()
        yield kafka
    finally:
        kafka.close()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _wait_for_topics(admin: AIOKafkaAdminClient, names: list[str]) -> list[dict[str, Any]]:
    """Describe topics until all exist with a leader for every partition, then return them.

    CreateTopics answers once the controller has committed the topic; the broker's metadata cache
    catches up a moment later, so a Metadata request right after it may still not list the topic.
    """
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            described: list[dict[str, Any]] = await admin.describe_topics(names)
            if all(
                t["error_code"] == 0 and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"])
                for t in described
            ):
                return described
            await asyncio.sleep(0.05)  # poll interval of a bounded wait, not a guess at timing


async def _create_topics(bootstrap: str, *topics: NewTopic) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(list(topics))
        await _wait_for_topics(admin, [t.name for t in topics])
    finally:
        await admin.close()


async def _consume_until(
    consumer: AIOKafkaConsumer,
    done: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    timeout: float = TIMEOUT_S,
) -> list[ConsumerRecord[bytes, bytes]]:
    records: list[ConsumerRecord[bytes, bytes]] = []
    async with asyncio.timeout(timeout):
        while not done(records):
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
    return records


def _values(records: list[ConsumerRecord[bytes, bytes]]) -> list[bytes]:
    return [r.value for r in records if r.value is not None]


def _seen(value: bytes) -> Callable[[list[ConsumerRecord[bytes, bytes]]], bool]:
    return lambda records: value in _values(records)


async def _read_topic(bootstrap: str, topic: str, *, isolation: str, until: bytes) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation,
    )
    await consumer.start()
    try:
        return _values(await _consume_until(consumer, _seen(until)))
    finally:
        await consumer.stop()


async def _committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    # Not AIOKafkaAdminClient.list_consumer_group_offsets: it neither retries nor checks the response's
    # top-level error, so COORDINATOR_LOAD_IN_PROGRESS (right after a restart) reads as "no offsets".
    # The consumer's coordinator retries retriable errors.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    consumer.assign([tp])
    await consumer.start()
    try:
        async with asyncio.timeout(TIMEOUT_S):
            offset: int | None = await consumer.committed(tp)
            return offset
    finally:
        await consumer.stop()


def test_broker_lists_itself_in_metadata(broker: KafkaBroker) -> None:
    assert broker.running
    host, port = broker.bootstrap_servers.split(":")
    assert host == "127.0.0.1"
    assert metadata_broker_ids(host, int(port)) == [1]
    assert broker.log_path.is_file()


async def test_admin_client_creates_topic(broker: KafkaBroker) -> None:
    topic = _name("created")
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        (described,) = await _wait_for_topics(admin, [topic])
        assert len(described["partitions"]) == 3
        assert {p["leader"] for p in described["partitions"]} == {1}
        assert topic in await admin.list_topics()
    finally:
        await admin.close()


async def test_auto_topic_creation_is_off(broker: KafkaBroker) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([_name("never-created")])
        assert described["error_code"] == 3  # UNKNOWN_TOPIC_OR_PARTITION
    finally:
        await admin.close()


async def test_transaction_commits_output_and_offsets_and_hides_aborted(broker: KafkaBroker) -> None:
    bootstrap = broker.bootstrap_servers
    source, sink, group = _name("in"), _name("out"), _name("group")
    await _create_topics(bootstrap, NewTopic(source, 1, 1), NewTopic(sink, 1, 1))
    source_tp = TopicPartition(source, 0)

    plain = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await plain.start()
    try:
        for i in range(3):
            await plain.send_and_wait(source, f"in-{i}".encode(), partition=0)
    finally:
        await plain.stop()

    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=_name("txn"))
    await consumer.start()
    await producer.start()  # InitProducerId v0
    try:
        consumed = await _consume_until(consumer, lambda records: len(records) >= 3)
        assert _values(consumed) == [b"in-0", b"in-1", b"in-2"]

        # Committed: two outputs plus the consumer's position, in one transaction.
        async with producer.transaction():
            await producer.send_and_wait(sink, b"committed-1", partition=0)
            await producer.send_and_wait(sink, b"committed-2", partition=0)
            await producer.send_offsets_to_transaction({source_tp: 2}, group)

        # Aborted: its outputs and its offset must not count.
        await producer.begin_transaction()
        await producer.send_and_wait(sink, b"aborted-1", partition=0)
        await producer.send_and_wait(sink, b"aborted-2", partition=0)
        await producer.send_offsets_to_transaction({source_tp: 3}, group)
        await producer.abort_transaction()

        # A later commit, so that a reader seeing it has read past the aborted records.
        async with producer.transaction():
            await producer.send_and_wait(sink, b"committed-3", partition=0)
    finally:
        await producer.stop()
        await consumer.stop()

    committed_view = await _read_topic(bootstrap, sink, isolation="read_committed", until=b"committed-3")
    assert committed_view == [b"committed-1", b"committed-2", b"committed-3"]
    raw_view = await _read_topic(bootstrap, sink, isolation="read_uncommitted", until=b"committed-3")
    assert raw_view == [b"committed-1", b"committed-2", b"aborted-1", b"aborted-2", b"committed-3"]

    assert await _committed(bootstrap, group, source_tp) == 2


async def test_new_transactional_producer_fences_the_old_one(broker: KafkaBroker) -> None:
    bootstrap = broker.bootstrap_servers
    sink, txn_id = _name("fence"), _name("txn")
    await _create_topics(bootstrap, NewTopic(sink, 1, 1))
    old = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id)
    new = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id)
    await old.start()
    try:
        await old.begin_transaction()
        await old.send_and_wait(sink, b"zombie", partition=0)
        await new.start()  # bumps the epoch and aborts the old producer's open transaction
        async with new.transaction():
            await new.send_and_wait(sink, b"survivor", partition=0)
        with pytest.raises(Exception, match=r"(?i)fenced|epoch"):
            await old.commit_transaction()
    finally:
        await new.stop()
        await old.stop()
    assert await _read_topic(bootstrap, sink, isolation="read_committed", until=b"survivor") == [b"survivor"]


@pytest.mark.slow
async def test_kill_and_restart_keep_data_and_offsets(broker: KafkaBroker) -> None:
    bootstrap = broker.bootstrap_servers
    topic, group = _name("durable"), _name("group")
    tp = TopicPartition(topic, 0)
    await _create_topics(bootstrap, NewTopic(topic, 1, 1))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, f"before-{i}".encode(), partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    consumer.assign([tp])
    await consumer.start()
    try:
        await consumer.commit({tp: OffsetAndMetadata(3, "")})
    finally:
        await consumer.stop()

    pid = broker.pid
    await asyncio.to_thread(broker.kill)
    assert (broker.running, broker.pid) == (False, None)  # (a tuple: mypy would keep the narrowing)
    host, port = bootstrap.split(":")
    with pytest.raises(OSError):
        metadata_broker_ids(host, int(port))

    await asyncio.to_thread(broker.restart)
    assert broker.running
    assert broker.pid not in {None, pid}
    assert broker.bootstrap_servers == bootstrap  # same port: clients reconnect to the same address

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"after", partition=0)
    finally:
        await producer.stop()
    values = await _read_topic(bootstrap, topic, isolation="read_committed", until=b"after")
    assert values == [*(f"before-{i}".encode() for i in range(5)), b"after"]

    assert await _committed(bootstrap, group, tp) == 3
