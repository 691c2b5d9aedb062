"""Topic layout: create what is missing (`topics ensure`) and refuse to run on a wrong one.

The changelog must have exactly as many partitions as the chat-events topic: changelog
partition p holds the state of the chats read from input partition p. With any other count,
restore would read some other partition's chats, so the worker refuses to start.

New topics get the brokers' `default.replication.factor` unless told otherwise (as Kafka's own
tools do), so the command works on a one-broker development cluster as on a production one. The
chat-events topic is created with `message.timestamp.type=LogAppendTime`: its record timestamps are
then the broker's append time, not the producers' clocks, and the worker's backlog gate reads them.
An existing chat-events topic is not altered (the legacy AlterConfigs request would reset every
dynamic setting it does not name); with CreateTime the report says what that means and the command
that switches it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from service.errors import KafkaAuthorizationError, TopicLayoutError
from service.kafka.connection import client_options
from service.kafka.topic_errors import CLUSTER_AUTHORIZATION_FAILED, TOPIC_ALREADY_EXISTS, creation_error
from service.settings import Settings

log = structlog.get_logger(__name__)

_COMPACTED = {"cleanup.policy": "compact"}
_LEADER_NOT_AVAILABLE = 5
"""Metadata error of a topic whose partitions are still electing leaders (just created)."""
_TOPIC_AUTHORIZATION_FAILED = 29
"""Metadata error of a topic the principal may not describe (Kafka answers so whether it exists or not)."""
_METADATA_WAIT_S = 15.0
DEFAULT_PARTITIONS = 12
"""Partitions of a new chat-events topic (and its changelog and outputs) unless told otherwise."""
DEAD_LETTER_CONFIGS = {"retention.ms": str(7 * 86_400_000), "segment.ms": str(86_400_000)}
"""Dead letters may hold personal data (docs/dead-letters.md): a week to triage and replay, set on
the topic so that a cluster's longer (or unlimited) default does not keep them for ever. Kafka
deletes a segment once its newest record is older than `retention.ms`, and a segment takes records
for up to `segment.ms` (default 7 days): daily segments keep a dead letter about 8 days, not 14."""
_TIMESTAMP_TYPE = "message.timestamp.type"
_LOG_APPEND_TIME = "LogAppendTime"


@dataclass(frozen=True, slots=True)
class EnsureReport:
    """What `topics ensure` did and what the operator should know about the topics it left as they were."""

    created: list[str]
    replication_factor: int | None
    """Of the created topics; None when nothing was created."""
    chat_events_timestamp_type: str | None
    """`message.timestamp.type` of the chat-events topic; None when it could not be read."""
    warnings: list[str]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str]


def topic_specs(settings: Settings, partitions: int) -> list[TopicSpec]:
    """Every topic the worker reads or writes, with its partition count and configuration."""
    return [
        TopicSpec(settings.topic_chat_events, partitions, {_TIMESTAMP_TYPE: _LOG_APPEND_TIME}),
        TopicSpec(settings.topic_changelog, partitions, _COMPACTED),
        TopicSpec(settings.topic_agents, 1, _COMPACTED),
        TopicSpec(settings.topic_sites, 1, _COMPACTED),
        TopicSpec(settings.topic_missed, partitions, {}),
        TopicSpec(settings.topic_chatbot, partitions, {}),
        TopicSpec(settings.topic_push_feedback, 1, {}),
        TopicSpec(settings.topic_dead_letter, 1, DEAD_LETTER_CONFIGS),
        TopicSpec(settings.topic_commands, partitions, {}),
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


async def required_partition_counts(settings: Settings, names: list[str], client_id: str) -> dict[str, int]:
    """Partition count of each of `names`, for a command-line tool that reads or writes the
    worker's topics; TopicLayoutError naming the ones that do not exist."""
    admin = AIOKafkaAdminClient(**client_options(settings), client_id=client_id)
    await admin.start()
    try:
        counts = await partition_counts(admin, names)
    finally:
        await admin.close()
    missing = [name for name in names if name not in counts]
    if missing:
        raise TopicLayoutError(
            f"topic(s) {', '.join(missing)} not found; check NOTIFIER_TOPIC_* against the worker's settings"
        )
    return counts


async def ensure_topics(
    settings: Settings, partitions: int | None = None, replication_factor: int | None = None
) -> EnsureReport:
    """Create missing topics (`partitions`: default DEFAULT_PARTITIONS; `replication_factor`: default the
    brokers'), then check the layout and report on what existed."""
    specs = topic_specs(settings, partitions or DEFAULT_PARTITIONS)
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = await partition_counts(admin, [spec.name for spec in specs])
        missing = [spec for spec in specs if spec.name not in existing]
        warnings = _existing_partition_warnings(settings, existing, partitions)
        chat_partitions = existing.get(settings.topic_chat_events)
        if missing and replication_factor is None:
            replication_factor = await default_replication_factor(admin)
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
            asked = {topic.name: topic.num_partitions for topic in new_topics}
            for name, code, *rest in response.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):  # already exists: a concurrent ensure
                    message = rest[0] if rest and isinstance(rest[0], str) else None
                    raise creation_error(
                        name,
                        code,
                        message,
                        partitions=asked[name],
                        replication_factor=replication_factor or 0,
                    )
            await _wait_for_leaders(admin, list(asked))
        await _check_layout(admin, settings)
        if settings.topic_chat_events in existing:
            timestamp_type = await _timestamp_type(admin, settings.topic_chat_events, warnings)
            if timestamp_type is not None and timestamp_type != _LOG_APPEND_TIME:
                warnings.append(_create_time_warning(settings, timestamp_type))
        else:
            timestamp_type = _LOG_APPEND_TIME
    finally:
        await admin.close()
    return EnsureReport(
        created=[spec.name for spec in missing],
        replication_factor=replication_factor if missing else None,
        chat_events_timestamp_type=timestamp_type,
        warnings=warnings,
    )


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    """Until every partition of the new topics has a leader (bounded): a worker started right after
    `topics ensure` then finds them ready instead of logging NOT_LEADER errors while they settle."""
    give_up = time.monotonic() + _METADATA_WAIT_S
    while time.monotonic() < give_up:
        topics = await admin.describe_topics(names)
        if all(
            topic["error_code"] == 0
            and topic["partitions"]
            and all(partition["leader"] >= 0 for partition in topic["partitions"])
            for topic in topics
        ):
            return
        await asyncio.sleep(0.1)


async def default_replication_factor(admin: AIOKafkaAdminClient) -> int:
    """The brokers' `default.replication.factor`, what Kafka's own tools use when none is given.

    (They send -1 in CreateTopics v4+; aiokafka speaks CreateTopics up to v3, where -1 is undefined.)
    """
    cluster = await admin.describe_cluster()
    broker = str(cluster["brokers"][0]["node_id"])
    resource = ConfigResource(ConfigResourceType.BROKER, broker, configs={"default.replication.factor": None})
    (response,) = await admin.describe_configs([resource])
    error_code, error_message, _, _, entries, *_ = response.resources[0]
    if error_code == CLUSTER_AUTHORIZATION_FAILED:
        raise KafkaAuthorizationError(
            "cannot read the brokers' default.replication.factor (CLUSTER_AUTHORIZATION_FAILED: this "
            "Kafka principal lacks DESCRIBE_CONFIGS on the cluster): pass --replication-factor"
        )
    values = [entry[1] for entry in entries if entry[0] == "default.replication.factor"]
    if error_code or not values:
        raise TopicLayoutError(
            f"cannot read the brokers' default.replication.factor (Kafka error {error_code}: "
            f"{error_message or 'not returned'}): pass --replication-factor"
        )
    return int(values[0])


def _existing_partition_warnings(
    settings: Settings, existing: dict[str, int], partitions: int | None
) -> list[str]:
    chat_events = settings.topic_chat_events
    if partitions is None or existing.get(chat_events, partitions) == partitions:
        return []
    warning = (
        f"topic {chat_events!r} already has {existing[chat_events]} partitions, not {partitions}: "
        "--partitions applies to new topics only, and existing ones are left as they are (adding "
        "partitions would move chats to other partitions than their changelog state)"
    )
    return [warning]


async def _timestamp_type(admin: AIOKafkaAdminClient, topic: str, warnings: list[str]) -> str | None:
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs={_TIMESTAMP_TYPE: None})
    (response,) = await admin.describe_configs([resource])
    error_code, _, _, _, entries, *_ = response.resources[0]
    values = [entry[1] for entry in entries if entry[0] == _TIMESTAMP_TYPE]
    if error_code or not values:
        warnings.append(
            f"could not read {_TIMESTAMP_TYPE} of topic {topic!r} (Kafka error {error_code}); grant this "
            "Kafka principal DESCRIBE_CONFIGS on it to have it checked"
        )
        return None
    return str(values[0])


def _create_time_warning(settings: Settings, timestamp_type: str) -> str:
    topic = settings.topic_chat_events
    return (
        f"topic {topic!r} has {_TIMESTAMP_TYPE}={timestamp_type}: its record timestamps are the "
        "producers' clocks, so the worker's backlog gate trusts those clocks within "
        "producer_clock_tolerance_seconds; to have the broker stamp records when it appends them, run "
        f"`kafka-configs.sh --bootstrap-server {settings.kafka_bootstrap_servers} --alter --entity-type "
        f"topics --entity-name {topic} --add-config {_TIMESTAMP_TYPE}={_LOG_APPEND_TIME}` "
        "(it applies to records appended from then on)"
    )


async def verify_topics(settings: Settings) -> None:
    """Raise TopicLayoutError unless the chat-events topic and its changelog are co-partitioned and
    the commands topic exists."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        await _check_layout(admin, settings)
    finally:
        await admin.close()


async def _check_layout(admin: AIOKafkaAdminClient, settings: Settings) -> None:
    # The commands topic has no layout rule; it must exist, or test pushes would go unanswered.
    names = [settings.topic_chat_events, settings.topic_changelog, settings.topic_commands]
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
            "because changelog partition p holds the state of chat-events partition p; it cannot be "
            "repaired in place: with every worker stopped, delete the changelog (its pending rounds are "
            "lost) and run `topics ensure`, which creates it with the chat-events topic's count"
        )
