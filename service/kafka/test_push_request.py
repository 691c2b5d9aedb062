"""`livechat-notifier test-push AGENT_ID`: send a test push command and wait for its answer.

For support: what an app's "send test notification" button does, from a shell with the worker's
settings (the same client options as `run`: TLS, SASL). The command goes to the commands topic
(key = agent id); the answer is read from the push-feedback partition the agent's key hashes to,
from its end offset taken *before* the command is sent, so an answer cannot be missed, without a
consumer group (nothing is committed) and `read_committed`.
"""

from __future__ import annotations

import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from service.errors import KafkaConnectionFailedError
from service.kafka.connection import client_options
from service.kafka.topics import required_partition_counts
from service.settings import Settings
from service.wire.commands import DeviceTestResult, TestPushRequested, decode_test_result, encode_test_request

_CLIENT_ID = "livechat-notifier-test-push"
_POLL_MS = 200


async def request_test_push(
    settings: Settings, agent_id: str, device_id: str | None, timeout_s: float
) -> tuple[str, list[DeviceTestResult] | None]:
    """Send a test push command for the agent; (its id, the answer's devices, or None when no answer
    came within `timeout_s`)."""
    command = TestPushRequested(str(uuid.uuid4()), agent_id, device_id)
    feedback = await _feedback_partition(settings, agent_id)
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        client_id=_CLIENT_ID,
    )
    producer = AIOKafkaProducer(
        **client_options(settings), enable_idempotence=True, acks="all", client_id=_CLIENT_ID
    )
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([feedback])
        await consumer.seek_to_end(feedback)
        await consumer.position(feedback)  # resolved now: the answer comes after this offset
        value = encode_test_request(command, settings.event_source, time.time_ns() // 1_000_000)
        await producer.send_and_wait(settings.topic_commands, value=value, key=agent_id.encode())
        return command.request_id, await _answer(consumer, command.request_id, timeout_s)
    except KafkaError as error:
        raise KafkaConnectionFailedError(f"sending the test push command failed: {error!r}") from error
    finally:
        await producer.stop()
        await consumer.stop()


async def _answer(
    consumer: AIOKafkaConsumer, request_id: str, timeout_s: float
) -> list[DeviceTestResult] | None:
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        for records in (await consumer.getmany(timeout_ms=_POLL_MS)).values():
            for record in records:
                devices = decode_test_result(record.value, request_id)
                if devices is not None:
                    return devices
    return None


async def _feedback_partition(settings: Settings, agent_id: str) -> TopicPartition:
    """The push-feedback partition the worker writes the agent's answers to (key = agent id)."""
    names = [settings.topic_commands, settings.topic_push_feedback]
    counts = await required_partition_counts(settings, names, _CLIENT_ID)
    # The worker produces with the default partitioner: the key decides the partition.
    partitions = list(range(counts[settings.topic_push_feedback]))
    return TopicPartition(
        settings.topic_push_feedback, DefaultPartitioner()(agent_id.encode(), partitions, partitions)
    )
