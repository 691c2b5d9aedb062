"""The configuration of a single-node KRaft Kafka: its listeners, ``server.properties`` and JVM options.

Plain data and one pure function, :func:`compose_server_properties`, which
:class:`~devtools.kafka_broker.KafkaBroker` calls at every start. The settings make one node usable for
consumer groups and transactions (replication factors 1, ``transaction.state.log.min.isr=1``) and quick
on a small machine (few internal-topic partitions, no initial rebalance delay, few threads).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devtools.kafka_process import HOST

BROKER_LISTENER = "PLAINTEXT"
CONTROLLER_LISTENER = "CONTROLLER"
NODE_ID = 1


@dataclass
class Listener:
    """One entry of ``listeners``: name, security protocol and where it listens."""

    name: str
    port: int
    security_protocol: str = "PLAINTEXT"
    host: str = HOST
    advertised: bool = True

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


# Single node, fast first use on a 2-core machine. Everything here can be overridden by extra_properties.
BASE_PROPERTIES: Mapping[str, str] = {
    "process.roles": "broker,controller",
    "node.id": str(NODE_ID),
    "controller.listener.names": CONTROLLER_LISTENER,
    "inter.broker.listener.name": BROKER_LISTENER,
    # One replica everywhere, or consumer groups and transactions never become available.
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    # Internal topics are created on first use: few partitions make that quick (defaults: 50).
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.num.partitions": "4",
    "num.partitions": "4",
    "auto.create.topics.enable": "false",
    "group.initial.rebalance.delay.ms": "0",
    # After a SIGKILL the restarted node's registration is refused (DUPLICATE_BROKER_REGISTRATION) until
    # the old incarnation's session expires: a short session makes kill-and-restart tests quick
    # (figures: docs/benchmarks.md, "The test broker's session timeout").
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
    # Small machine: fewer threads, a small log-cleaner buffer (default 128 MiB of a modest heap).
    "num.network.threads": "2",
    "num.io.threads": "4",
    "num.recovery.threads.per.data.dir": "1",
    "background.threads": "4",
    "log.cleaner.threads": "1",
    "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
}

DEFAULT_JVM_OPTIONS: Sequence[str] = (
    "-Xms128m",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
    "-Dorg.slf4j.simpleLogger.log.kafka.request.logger=warn",
    "-Dorg.slf4j.simpleLogger.log.state.change.logger=warn",
)


def compose_server_properties(
    listeners: Mapping[str, Listener], data_dir: Path, extra_properties: Mapping[str, str]
) -> dict[str, str]:
    """:data:`BASE_PROPERTIES`, then what ``listeners`` and ``data_dir`` imply, then ``extra_properties``.

    ``listeners`` must hold :data:`CONTROLLER_LISTENER`; the others are client listeners.
    """
    controller = listeners[CONTROLLER_LISTENER]
    props = dict(BASE_PROPERTIES)
    props.update(
        {
            "listeners": ",".join(f"{lst.name}://{lst.address}" for lst in listeners.values()),
            "advertised.listeners": ",".join(
                f"{lst.name}://{lst.address}" for lst in listeners.values() if lst.advertised
            ),
            "listener.security.protocol.map": ",".join(
                f"{lst.name}:{lst.security_protocol}" for lst in listeners.values()
            ),
            "controller.quorum.voters": f"{NODE_ID}@{controller.address}",
            "log.dirs": str(data_dir),
        }
    )
    props.update(extra_properties)
    return props
