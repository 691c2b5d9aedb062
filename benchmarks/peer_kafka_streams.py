"""The worker next to a Kafka Streams application doing the same job (issue #13), in the same run, on
the same broker and the same input.

The peer (benchmarks/kstreams/, built by `benchmarks.kstreams_peer`): `exactly_once_v2`, two RocksDB
stores with changelogs (rounds by chat id; a deadline index) and a wall-clock punctuator; its
low-latency settings and why are in benchmarks/kstreams/README.md. One worker process and one
peer process (one stream thread) take turns, never running together. Three figures, for both:

* throughput: events/s on one pre-filled topic (`rounds` rounds of a request and a join or end,
  4 partitions), each read from the start by a group of its own; measured as the throughput
  section does, from the group's committed offsets sampled every 100 ms
  (`throughput.watch_progress`).
* Missed lateness at half load: `pending` rounds with an hour to accept loaded first, then for
  `seconds` the same stream as the deadlines section (`rate` events/s in 20 ms ticks, every tenth
  round left to expire after `tta_s`), `rate` being half the slower contender's measured
  throughput (capped by the scale). Each contender's Missed topic is a `LogAppendTime` topic, so a
  record's timestamp is when the broker appended it; a `read_committed` consumer reads it. Lateness
  = append time - deadline (the deadline computed by the driver: requested_at + time to accept)
  and, what downstream sees, receipt by that consumer - deadline (includes the transaction's
  commit). Each expired round must yield exactly one Missed and one chatbot record.
* restore: `rounds` pending rounds (an hour to accept) written straight into each contender's
  changelog(s), spread over the partitions, as the restore section does for the worker (the peer:
  its two changelogs, 2 records per round). A new instance (the peer without local state) is
  started together with one closing event per partition; figure = process spawn -> the group's
  committed offsets include every one of those events (every partition restored and processing),
  polled every 20 ms. Also: spawn -> ready (the worker's /ready, the peer's RUNNING).

Sizes per scale in `SIZES` (full: the suite's deadline and restore sizes; smoke: small enough for
CI, where only "it runs" is checked).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.kstreams_peer import JVM_OPTIONS, Build, Peer, ensure_built, start_peer
from benchmarks.latency import summary_ms
from benchmarks.rig import (
    SITE_ID,
    Workers,
    fill_rounds,
    fresh_settings,
    now_ms,
    publish_directory,
    start_producer,
)
from benchmarks.throughput import committed_total, watch_progress
from devtools import traffic
from devtools.changelog_fill import fill_changelog
from devtools.kafka_io import BackgroundReader

TICK_S = 0.02
MISSED_EVERY = 10
RESTORE_POLL_S = 0.02
PROBE_CHAT = "chat-0000000000"
DEFAULT_COMMIT = "kafka_streams_commit_100ms"


@dataclass(frozen=True)
class Size:
    throughput_rounds: int
    pending: int
    seconds: float
    tta_s: int
    rate_cap: int
    restore_rounds: int


SIZES = {
    "smoke": Size(2_000, 1_000, 3.0, 2, 2_000, 4_000),
    "full": Size(100_000, 100_000, 60.0, 10, 1_000_000, 1_000_000),
}


@dataclass(frozen=True)
class Lane:
    """One contender's topics and consumer group."""

    input: str
    missed: str
    chatbot: str
    group: str
    state_dir: Path | None = None


class Running(Protocol):
    def alive(self) -> bool: ...

    async def stop(self) -> None: ...


async def create_topics(bootstrap: str, partitions: int, *names: str, log_append: bool = False) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        configs = {"message.timestamp.type": "LogAppendTime"} if log_append else {}
        await admin.create_topics([NewTopic(n, partitions, 1, topic_configs=configs) for n in names])
    finally:
        await admin.close()


@dataclass
class RunningWorkers:
    workers: Workers

    def alive(self) -> bool:
        return all(w.process.returncode is None for w in self.workers.fleet.workers.values())

    async def stop(self) -> None:
        await self.workers.stop()


@dataclass
class WorkerSide:
    """The worker as deployed: `python -m service run`, one process."""

    bootstrap: str
    partitions: int
    log_dir: Path
    name: str = "worker"
    _settings: dict[str, Any] | None = None

    async def lane(self, tag: str, input_topic: str | None = None) -> Lane:
        stamp = f"wk-{tag}-{now_ms() % 10**8}"
        await create_topics(self.bootstrap, self.partitions, f"{stamp}.missed", log_append=True)
        overrides = {"topic_missed": f"{stamp}.missed"}
        if input_topic is not None:
            overrides["topic_chat_events"] = input_topic
        settings = await fresh_settings(self.bootstrap, f"ks-{tag}", self.partitions, **overrides)
        producer = start_producer(self.bootstrap)
        await producer.start()
        try:
            await publish_directory(producer, settings, devices=0)
        finally:
            await producer.stop()
        self._settings = (self._settings or {}) | {settings.group_id: settings}
        return Lane(
            settings.topic_chat_events, settings.topic_missed, settings.topic_chatbot, settings.group_id
        )

    async def start(self, lane: Lane) -> RunningWorkers:
        assert self._settings is not None
        workers = Workers.for_settings(self._settings[lane.group], self.log_dir / f"kstreams-{lane.group}")
        await workers.fleet.start("worker-0")
        return RunningWorkers(workers)

    async def ready_ms(self, running: Running) -> int:
        assert isinstance(running, RunningWorkers)
        await running.workers.fleet.wait_ready("worker-0", 900.0)
        return now_ms()

    changelog_records_per_round = 1

    async def fill_changelog(self, lane: Lane, rounds: int) -> None:
        """`rounds` pending rounds (an hour to accept) spread over the changelog's partitions, as the
        restore section writes them (devtools.changelog_fill: the worker's own encoding)."""
        assert self._settings is not None
        at = now_ms()
        for partition in range(self.partitions):
            count = rounds // self.partitions
            changelog = self._settings[lane.group].topic_changelog
            await fill_changelog(self.bootstrap, changelog, partition, count, at, at + 3_600_000)


@dataclass
class PeerSide:
    """The Kafka Streams peer, one process with one stream thread."""

    bootstrap: str
    partitions: int
    workdir: Path
    build: Build
    tta_default_s: int = 120
    name: str = "kafka_streams"
    overrides: tuple[tuple[str, str], ...] = ()
    """Kafka Streams settings over the peer's own (`streams.<setting>`, value)."""

    async def lane(self, tag: str, input_topic: str | None = None) -> Lane:
        app_id = f"ks-{tag}-{now_ms() % 10**8}"
        if input_topic is None:
            input_topic = f"{app_id}.chat-events"
            await create_topics(self.bootstrap, self.partitions, input_topic)
        await create_topics(self.bootstrap, self.partitions, f"{app_id}.missed", log_append=True)
        await create_topics(self.bootstrap, self.partitions, f"{app_id}.chatbot")
        return Lane(
            input_topic, f"{app_id}.missed", f"{app_id}.chatbot", app_id, self.workdir / "ks-state" / app_id
        )

    async def start(self, lane: Lane) -> Peer:
        assert lane.state_dir is not None
        return await start_peer(
            self.build,
            self.workdir / "logs" / "kstreams" / f"{lane.group}.log",
            bootstrap=self.bootstrap,
            application_id=lane.group,
            input=lane.input,
            missed=lane.missed,
            chatbot=lane.chatbot,
            state_dir=str(lane.state_dir),
            default_tta_s=self.tta_default_s,
            **dict(self.overrides),
        )

    async def ready_ms(self, running: Running) -> int:
        assert isinstance(running, Peer)
        return await running.wait_state("RUNNING", 900.0)

    changelog_records_per_round = 2

    async def fill_changelog(self, lane: Lane, rounds: int) -> None:
        """What the peer's two changelogs hold after `rounds` requests (an hour to accept), spread
        over the partitions: `rounds` (chat id -> RoundsProcessor.Round's encoding) and
        `deadlines` (8-byte big-endian deadline + chat id -> empty). Created compacted, as Streams
        creates them; the instance that starts has no local state, so it restores both."""
        names = [f"{lane.group}-{store}-changelog" for store in ("rounds", "deadlines")]
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            topics = [
                NewTopic(n, self.partitions, 1, topic_configs={"cleanup.policy": "compact"}) for n in names
            ]
            await admin.create_topics(topics)
        finally:
            await admin.close()
        at = now_ms()
        deadline = at + 3_600_000
        site = SITE_ID.encode()
        for partition in range(self.partitions):
            chats = [f"chat-{i:010d}" for i in range(rounds // self.partitions)]
            await append_records(
                self.bootstrap,
                names[0],
                partition,
                (
                    (c.encode(), struct.pack(">qqi", deadline, at, len(site)) + site + f"req-{c}".encode())
                    for c in chats
                ),
            )
            key = struct.pack(">q", deadline)
            await append_records(
                self.bootstrap, names[1], partition, ((key + c.encode(), b"") for c in chats)
            )


Side = WorkerSide | PeerSide


async def append_records(
    bootstrap: str, topic: str, partition: int, records: Iterable[tuple[bytes, bytes]]
) -> None:
    """Append (key, value) records to one partition as fast as the producer batches them."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_batch_size=1_048_576, linger_ms=20
    )
    await producer.start()
    try:
        pending: list[asyncio.Future[Any]] = []
        batch = producer.create_batch()
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            if len(pending) > 32:
                await asyncio.gather(*pending)
                pending.clear()
        if batch.record_count():
            pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def throughput(sides: list[Side], rounds: int, partitions: int, bootstrap: str) -> dict[str, Any]:
    shared = await sides[0].lane("tp")
    total = await fill_rounds(bootstrap, shared.input, partitions, rounds)
    figures: dict[str, Any] = {"rounds": rounds, "events": total}
    for side in sides:
        lane = shared if side is sides[0] else await side.lane("tp", input_topic=shared.input)
        running = await side.start(lane)
        try:
            figures[side.name] = await watch_progress(bootstrap, lane.group, total, 900.0, running.alive)
        finally:
            await running.stop()
    return figures


class OutputCounter(BackgroundReader):
    """A `read_committed` reader of a Missed and a chatbot topic: per key, the first Missed's append
    time (LogAppendTime) and when this consumer received it, and how many of each arrived."""

    def __init__(self, bootstrap: str, missed: str, chatbot: str) -> None:
        consumer = AIOKafkaConsumer(
            missed,
            chatbot,
            bootstrap_servers=bootstrap,
            group_id=None,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
        )
        super().__init__(consumer, poll_ms=100)
        self.missed_topic = missed
        self.first_missed: dict[str, tuple[int, int]] = {}
        self.missed_count: dict[str, int] = {}
        self.chatbot_count: dict[str, int] = {}
        self.log_append_time = True
        self._changed = asyncio.Event()

    def _take(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        received = now_ms()
        for records in batches.values():
            for record in records:
                key = record.key.decode() if record.key is not None else ""
                if record.topic == self.missed_topic:
                    self.missed_count[key] = self.missed_count.get(key, 0) + 1
                    self.first_missed.setdefault(key, (record.timestamp, received))
                    self.log_append_time &= record.timestamp_type == 1
                else:
                    self.chatbot_count[key] = self.chatbot_count.get(key, 0) + 1

    async def _taken(self) -> None:
        self._changed.set()

    async def wait_for(self, keys: set[str], timeout: float) -> None:  # noqa: ASYNC109
        """Until a Missed for every key arrived or `timeout` passed (what is missing is reported)."""
        give_up = time.monotonic() + timeout
        while not keys <= self.first_missed.keys() and (remaining := give_up - time.monotonic()) > 0:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


async def stream(
    producer: AIOKafkaProducer, topic: str, rate: int, seconds: float, tta_s: int
) -> tuple[dict[str, int], float]:
    """`rate` events/s in ticks: rounds of a request and a join, every tenth a request that expires
    after `tta_s`. Returns {expiring chat id: its deadline (epoch ms)} and the rate produced."""
    deadlines: dict[str, int] = {}
    produced = 0
    round_no = 0
    started = time.monotonic()
    for tick in range(int(seconds / TICK_S)):
        delay = started + tick * TICK_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        while produced < int((tick + 1) * TICK_S * rate):
            chat_id = f"dl-{round_no:09d}"
            at = now_ms()
            expires = round_no % MISSED_EVERY == 0
            tta = tta_s if expires else 3600
            await producer.send(
                topic,
                traffic.handoff_requested(chat_id, SITE_ID, at, time_to_accept_seconds=tta),
                key=chat_id.encode(),
            )
            produced += 1
            if expires:
                deadlines[chat_id] = at + tta * 1000
            else:
                await producer.send(
                    topic, traffic.agent_joined(chat_id, SITE_ID, "agent-bench", at), key=chat_id.encode()
                )
                produced += 1
            round_no += 1
    await producer.flush()
    return deadlines, produced / (time.monotonic() - started)


async def lateness(
    side: Side, bootstrap: str, partitions: int, *, pending: int, rate: int, seconds: float, tta_s: int
) -> dict[str, Any]:
    lane = await side.lane("lat")
    running = await side.start(lane)
    outputs = OutputCounter(bootstrap, lane.missed, lane.chatbot)
    producer = start_producer(bootstrap, linger_ms=5)
    await outputs.start()
    await producer.start()
    try:
        await fill_rounds(bootstrap, lane.input, partitions, pending, tta_s=3600, close=False, prefix="bg")
        await watch_progress(bootstrap, lane.group, pending, 900.0, running.alive)
        deadlines, produced_rate = await stream(producer, lane.input, rate, seconds, tta_s)
        await outputs.wait_for(set(deadlines), tta_s + 60.0)
        await asyncio.sleep(1.0)  # a second more, so a duplicate written late is seen too
    finally:
        await producer.stop()
        await running.stop()
        await outputs.stop()
    got = {k: v for k, v in outputs.first_missed.items() if k in deadlines}
    return {
        "pending_rounds": pending,
        "rate_events_per_s_target": rate,
        "rate_events_per_s_produced": round(produced_rate, 1),
        "tta_s": tta_s,
        "missed_expected": len(deadlines),
        "missed_received": len(got),
        "missed_duplicates": sum(n - 1 for k, n in outputs.missed_count.items() if k in deadlines),
        "chatbot_received": sum(1 for k in deadlines if outputs.chatbot_count.get(k)),
        "chatbot_duplicates": sum(n - 1 for k, n in outputs.chatbot_count.items() if k in deadlines),
        "missed_topic_log_append_time": outputs.log_append_time,
        "lateness_append": summary_ms([(append - deadlines[k]) / 1000 for k, (append, _) in got.items()]),
        "lateness_visible": summary_ms([(seen - deadlines[k]) / 1000 for k, (_, seen) in got.items()]),
    }


async def _until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> int:  # noqa: ASYNC109
    give_up = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > give_up:
            raise TimeoutError(f"{what} not within {timeout}s")
        await asyncio.sleep(RESTORE_POLL_S)
    return now_ms()


async def restore(side: Side, bootstrap: str, partitions: int, rounds: int) -> dict[str, Any]:
    lane = await side.lane("rs")
    fill_started = time.monotonic()
    await side.fill_changelog(lane, rounds)
    fill_s = time.monotonic() - fill_started
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    producer = start_producer(bootstrap)
    await admin.start()
    await producer.start()
    try:
        spawned = now_ms()
        running = await side.start(lane)
        try:
            # Each changelog partition holds chat-0000000000 (fill_changelog, per partition): closing
            # it in input partition i needs partition i's state restored.
            for i in range(partitions):
                probe = traffic.agent_joined(PROBE_CHAT, SITE_ID, "agent-bench", now_ms())
                await producer.send_and_wait(lane.input, probe, key=PROBE_CHAT.encode(), partition=i)

            async def processed() -> bool:
                if not running.alive():
                    raise RuntimeError(f"{side.name} exited during restore")
                return await committed_total(admin, lane.group) >= partitions

            ready_task = asyncio.create_task(side.ready_ms(running))
            processing = await _until(processed, 1800.0, "processing after restore")
            ready = await ready_task
        finally:
            await running.stop()
    finally:
        await producer.stop()
        await admin.close()
    return {
        "rounds": rounds,
        "changelog_records": rounds * side.changelog_records_per_round,
        "fill_s": round(fill_s, 2),
        "spawn_to_processing_s": round((processing - spawned) / 1000, 2),
        "spawn_to_ready_s": round((ready - spawned) / 1000, 2),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


async def run(bootstrap: str, workdir: Path, scale: str, partitions: int) -> dict[str, Any]:
    size = SIZES[scale]
    build = await asyncio.to_thread(ensure_built)
    worker = WorkerSide(bootstrap, partitions, workdir / "logs")
    peer = PeerSide(bootstrap, partitions, workdir, build)
    sides: list[Side] = [worker, peer]
    # Throughput also with Streams' own EOS commit interval (100 ms): the low-latency 10 ms costs
    # throughput, and the target is judged against the faster of the two.
    default_commit = PeerSide(
        bootstrap,
        partitions,
        workdir,
        build,
        name=DEFAULT_COMMIT,
        overrides=(("streams.commit.interval.ms", "100"),),
    )
    tp = await throughput([*sides, default_commit], size.throughput_rounds, partitions, bootstrap)
    slower = min(tp[s.name]["events_per_s"] for s in sides)
    rate = int(min(size.rate_cap, slower / 2))
    late = {
        s.name: await lateness(
            s, bootstrap, partitions, pending=size.pending, rate=rate, seconds=size.seconds, tta_s=size.tta_s
        )
        for s in sides
    }
    rs = {s.name: await restore(s, bootstrap, partitions, size.restore_rounds) for s in sides}
    w, k = "worker", "kafka_streams"
    return {
        "peer_build": {
            "built_now": build.built_now,
            "build_s": round(build.seconds, 1),
            "dir": build.directory.name,
            "jvm_options": list(JVM_OPTIONS),
        },
        "size": asdict(size),
        "partitions": partitions,
        "half_load_events_per_s": rate,
        "throughput": tp,
        "lateness": late,
        "restore": rs,
        "ratio_throughput_worker_over_kstreams": _ratio(
            tp[w]["events_per_s"], max(tp[k]["events_per_s"], tp[DEFAULT_COMMIT]["events_per_s"])
        ),
        "ratio_p99_visible_worker_over_kstreams": _ratio(
            late[w]["lateness_visible"].get("p99_ms"), late[k]["lateness_visible"].get("p99_ms")
        ),
        "ratio_restore_kstreams_over_worker": _ratio(
            rs[k]["spawn_to_processing_s"], rs[w]["spawn_to_processing_s"]
        ),
    }
