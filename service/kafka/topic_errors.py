"""What `topics ensure` says when Kafka refuses to create a topic: one sentence, cause and fix.

Kafka answers CreateTopics per topic with an error code and, from newer brokers, a message. A bare
"Kafka error code 38" tells an operator nothing, so every code the command can meet is turned here
into the cause in words (with the broker's own message, which often names the limit) and what to do
about it. Codes not listed still name the error and point at Kafka's table of codes.
"""

from __future__ import annotations

from aiokafka.errors import for_code

from service.errors import KafkaAuthorizationError, NotifierError, TopicLayoutError

TOPIC_ALREADY_EXISTS = 36
"""Not a failure: another `topics ensure` created it a moment ago; the layout check follows."""
TOPIC_AUTHORIZATION_FAILED = 29
CLUSTER_AUTHORIZATION_FAILED = 31

_RERUN = "then run `topics ensure` again (it only creates what is missing and checks the layout)"
_FIXES: dict[int, str] = {
    7: "the controller did not finish in time; check that the brokers are healthy, " + _RERUN,
    17: "fix the NOTIFIER_TOPIC_* setting that names it (letters, digits, '.', '_' and '-', at most 249)",
    29: "grant this Kafka principal CREATE on the topic (or on the cluster), or have an administrator "
    "run `topics ensure`",
    31: "grant this Kafka principal CREATE on the cluster (or on each topic), or have an administrator "
    "run `topics ensure`",
    35: "the broker does not support the request versions aiokafka sends; upgrade the brokers",
    37: "pass --partitions with a positive count within the cluster's limits",
    38: "pass --replication-factor no greater than the number of brokers, or leave it out to use the "
    "brokers' default.replication.factor",
    40: "the broker refused a topic setting (the worker sets cleanup.policy=compact on the changelog, "
    "agents and sites topics and message.timestamp.type=LogAppendTime on chat-events); create that "
    "topic with what your cluster allows, " + _RERUN,
    41: "the cluster is electing a new controller; " + _RERUN.removeprefix("then ") + " in a few seconds",
    42: "this broker does not accept the request aiokafka sends; check the broker version, " + _RERUN,
    44: "the cluster's create.topic.policy refused it; create the topic with the partitions, replication "
    "factor and settings the policy allows (its message says which), " + _RERUN,
}


def creation_error(
    topic: str, code: int, message: str | None, *, partitions: int, replication_factor: int
) -> NotifierError:
    """The exception for a CreateTopics error `code` (not 0, not TOPIC_ALREADY_EXISTS) of `topic`."""
    name = getattr(for_code(code), "message", "UNKNOWN")
    detail = f"{name}: {' '.join(message.split())}" if message else name
    cause = f"Kafka refused to create topic {topic!r} with {partitions} partitions and {replication_factor} "
    cause += f"replicas (error {code}, {detail})"
    fix = _FIXES.get(code, "see https://kafka.apache.org/protocol#protocol_error_codes")
    error_type = (
        KafkaAuthorizationError
        if code in (TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED)
        else TopicLayoutError
    )
    return error_type(f"{cause}: {fix}")
