"""Topic layout: create what is missing (`topics ensure`) and refuse to run on a wrong one.

The changelog must have exactly as many partitions as the chat-events topic: changelog
partition p holds the state of the chats read from input partition p. With any other count,
restore would read some other partition's chats, so the worker refuses to start.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from service.errors import KafkaAuthorizationError, TopicLayoutError
from service.kafka.connection import client_options
from service.settings import Settings

log = structlog.get_logger(__name__)

_COMPACTED = {"cleanup.policy": "compact"}
_LEADER_NOT_AVAILABLE = 5
"""Metadata error of a topic whose partitions are still electing leaders (just created)."""
_TOPIC_AUTHORIZATION_FAILED = 29
"""Metadata error of a topic the principal may not describe (Kafka answers so whether it exists or not)."""
_METADATA_WAIT_S = 15.0


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str]


def topic_specs(settings: Settings, partitions: int) -> list[TopicSpec]:
    """Every topic the worker reads or writes, with its partition count and configuration."""
    return [
        TopicSpec(settings.topic_chat_events, partitions, {}),
        TopicSpec(settings.topic_changelog, partitions, _COMPACTED),
        TopicSpec(settings.topic_agents, 1, _COMPACTED),
        TopicSpec(settings.topic_sites, 1, _COMPACTED),
        TopicSpec(settings.topic_missed, partitions, {}),
        TopicSpec(settings.topic_chatbot, partitions, {}),
        TopicSpec(settings.topic_push_feedback, 1, {}),
        TopicSpec(settings.topic_dead_letter, 1, {}),
    ]


async def partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partition count of each existing topic among `names`."""
    counts: dict[str, int] = {}
    for topic in await admin.describe_topics(names):
        if topic["error_code"] == _TOPIC_AUTHORIZATION_FAILED:
            raise KafkaAuthorizationError(
                f"not authorized to describe topic {topic['topic']!r} (TOPIC_AUTHORIZATION_FAILED): grant "
                "the worker's Kafka principal READ, WRITE and DESCRIBE on its topics, READ on its consumer "
                "group, WRITE on its transactional ids and IDEMPOTENT_WRITE on the cluster"
            )
        if topic["error_code"] in (0, _LEADER_NOT_AVAILABLE) and topic["partitions"]:
            counts[topic["topic"]] = len(topic["partitions"])
    return counts


async def ensure_topics(settings: Settings, partitions: int, replication_factor: int) -> list[str]:
    """Create missing topics; return the names created. Then check the layout."""
    specs = topic_specs(settings, partitions)
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = await partition_counts(admin, [spec.name for spec in specs])
        missing = [spec for spec in specs if spec.name not in existing]
        chat_partitions = existing.get(settings.topic_chat_events)
        new_topics = [
            NewTopic(
                spec.name,
                # A missing changelog follows the existing chat-events topic, whatever --partitions says.
                chat_partitions
                if spec.name == settings.topic_changelog and chat_partitions
                else spec.partitions,
                replication_factor,
                topic_configs=spec.configs,
            )
            for spec in missing
        ]
        if new_topics:
            response = await admin.create_topics(new_topics)
            for name, code, *_ in response.topic_errors:
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (a concurrent ensure)
                    raise TopicLayoutError(f"creating topic {name!r} failed with Kafka error code {code}")
        await _check_layout(admin, settings)
    finally:
        await admin.close()
    return [spec.name for spec in missing]


async def verify_topics(settings: Settings) -> None:
    """Raise TopicLayoutError unless the chat-events topic and its changelog are co-partitioned."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        await _check_layout(admin, settings)
    finally:
        await admin.close()


async def _check_layout(admin: AIOKafkaAdminClient, settings: Settings) -> None:
    names = [settings.topic_chat_events, settings.topic_changelog]
    # Metadata of a topic created a moment ago reaches the broker we ask only shortly after.
    give_up = time.monotonic() + _METADATA_WAIT_S
    counts = await partition_counts(admin, names)
    while any(name not in counts for name in names) and time.monotonic() < give_up:
        await asyncio.sleep(0.2)
        counts = await partition_counts(admin, names)
    for name in names:
        if name not in counts:
            raise TopicLayoutError(f"topic {name!r} does not exist; run `livechat-notifier topics ensure`")
    if counts[settings.topic_chat_events] != counts[settings.topic_changelog]:
        raise TopicLayoutError(
            f"changelog {settings.topic_changelog!r} has {counts[settings.topic_changelog]} partitions but "
            f"{settings.topic_chat_events!r} has {counts[settings.topic_chat_events]}: they must be equal, "
            "because changelog partition p holds the state of chat-events partition p"
        )
