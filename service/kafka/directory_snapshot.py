"""A one-off read of what the worker knows about one agent, for `livechat-notifier explain agent`.

Reads the compacted agents and sites topics and the push-feedback topic from the beginning to
their end offsets, with the same client options as `run` (TLS, SASL), without a consumer group
(nothing is committed, no worker's group is disturbed) and `read_committed` (the worker's own
feedback events are written in transactions). Records are decoded by the worker's own decoders; a
record the worker would dead-letter is skipped and counted, as the worker would not apply it
either. Of the push-feedback topic only the agent's `livechat.push.token_rejected` events are
kept (read from the partition its key hashes to; other keys there are skipped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from service.domain.eligibility import KnownRejection
from service.domain.events import AgentSnapshot, SiteSnapshot
from service.domain.push import Provider
from service.errors import KafkaConnectionFailedError
from service.kafka.connection import client_options
from service.kafka.topics import required_partition_counts
from service.partition.records import ConsumedRecord
from service.settings import Settings
from service.wire.inbound import DecodeLimits, decode_agent, decode_key, decode_site
from service.wire.outbound import TOKEN_REJECTED
from service.wire.rejection import Rejection

_READ_TIMEOUT_MS = 1_000


class _Envelope(msgspec.Struct):
    type: str
    data: msgspec.Raw


class _TokenRejected(msgspec.Struct):
    agent_id: str
    device_id: str
    provider: Provider
    reason: str
    rejected_at: datetime


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_TOKEN_REJECTED = msgspec.json.Decoder(_TokenRejected)


@dataclass
class DirectoryRead:
    """The agent's latest snapshot (None if absent or deleted) with its record timestamp, every
    live site, and the agent's token rejections."""

    agent: AgentSnapshot | None = None
    agent_timestamp_ms: int | None = None
    sites: dict[str, SiteSnapshot] = field(default_factory=dict)
    rejections: list[KnownRejection] = field(default_factory=list)
    skipped: int = 0
    """Records the worker would dead-letter (not applied here either)."""


async def read_agent_view(settings: Settings, agent_id: str, limits: DecodeLimits) -> DirectoryRead:
    """Everything `explain agent` needs, read up to the topics' current end offsets."""
    partitions = await _partitions(settings, agent_id)
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        client_id="livechat-notifier-explain",
    )
    read = DirectoryRead()
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        pending = [tp for tp in partitions if ends[tp] > 0]
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=_READ_TIMEOUT_MS, max_records=10_000)
            for tp, records in batches.items():
                for record in records:
                    _apply(read, settings, agent_id, tp.topic, record, limits)
            pending = [tp for tp in pending if await consumer.position(tp) < ends[tp]]
    except KafkaError as error:
        raise KafkaConnectionFailedError(f"reading the directory topics failed: {error!r}") from error
    finally:
        await consumer.stop()
    return read


async def _partitions(settings: Settings, agent_id: str) -> list[TopicPartition]:
    """Every partition of the agents and sites topics, and the push-feedback partition of the agent."""
    names = [settings.topic_agents, settings.topic_sites, settings.topic_push_feedback]
    counts = await required_partition_counts(settings, names, "livechat-notifier-explain")
    partitions = [
        TopicPartition(topic, number)
        for topic in (settings.topic_agents, settings.topic_sites)
        for number in range(counts[topic])
    ]
    # The worker produces with the default partitioner: the key decides the partition.
    feedback = list(range(counts[settings.topic_push_feedback]))
    chosen = DefaultPartitioner()(agent_id.encode(), feedback, feedback)
    partitions.append(TopicPartition(settings.topic_push_feedback, chosen))
    return partitions


def _apply(
    read: DirectoryRead,
    settings: Settings,
    agent_id: str,
    topic: str,
    record: ConsumedRecord,
    limits: DecodeLimits,
) -> None:
    if topic == settings.topic_sites:
        _apply_site(read, record, limits)
    elif decode_key(record.key) != agent_id:
        return
    elif topic == settings.topic_agents:
        _apply_agent(read, record, limits)
    elif record.value is not None:
        rejection = _token_rejected(record.value, agent_id)
        if rejection is not None:
            read.rejections.append(rejection)


def _apply_agent(read: DirectoryRead, record: ConsumedRecord, limits: DecodeLimits) -> None:
    if record.value is None:  # tombstone: the agent was deleted
        read.agent, read.agent_timestamp_ms = None, None
        return
    agent = decode_agent(record.key, record.value, limits)
    if isinstance(agent, Rejection):
        read.skipped += 1
        return
    read.agent, read.agent_timestamp_ms = agent, record.timestamp


def _apply_site(read: DirectoryRead, record: ConsumedRecord, limits: DecodeLimits) -> None:
    if record.value is None:
        key = decode_key(record.key)
        if key is not None:
            read.sites.pop(key, None)
        return
    decoded = decode_site(record.key, record.value, limits)
    if isinstance(decoded, Rejection):
        read.skipped += 1
        return
    site, _repairs = decoded
    read.sites[site.site_id] = site


def _token_rejected(value: bytes, agent_id: str) -> KnownRejection | None:
    """The event's device and time, or None for another type or a value that is not one."""
    try:
        envelope = _ENVELOPE.decode(value)
        if envelope.type != TOKEN_REJECTED:
            return None
        data = _TOKEN_REJECTED.decode(envelope.data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if data.agent_id != agent_id or data.rejected_at.tzinfo is None:
        return None
    rejected_at_ms = int(data.rejected_at.timestamp() * 1000)
    return KnownRejection(data.device_id, data.provider, data.reason, rejected_at_ms)
