"""Missed lateness as a downstream service sees it (issue #13): a `read_committed` consumer of the
Missed topic notes when it receives each Missed; lateness = receive time - the round's deadline.

One worker process. First a backlog of `backlog` rounds (a request and a join or an end each) is
written before the worker starts, and the driver waits until the worker's group committed all of
it (the worker drained it). Right after, for `seconds`, the driver produces 200 requests/s (every
tenth unanswered with `tta_s` to accept: Missed; the others joined); then the same at `half_rate`
events/s (the suite passes half the max throughput it measured, or half of 20,000/s). For each
phase, three lateness figures per Missed:
- `at_consumer`: this consumer's receive time (epoch, this machine's clock) - deadline;
- `in_worker`: the event's `missed_at - deadline_at` (the worker's decision, before its commit);
- the worker's own histogram `notifier_deadline_lateness_seconds` (share within 50 ms).
The consumer is the driver's own (one process with the producer): at 200 requests/s it is idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from benchmarks.latency import summary_ms
from benchmarks.rig import (
    SITE_ID,
    Workers,
    fill_rounds,
    fresh_settings,
    now_ms,
    publish_directory,
    schedstat,
    scrape,
    start_producer,
)
from benchmarks.throughput import watch_progress
from devtools import traffic
from devtools.kafka_io import BackgroundReader

SIZES = {"smoke": (2_000, 3.0, 2), "full": (100_000, 30.0, 5)}
"""Backlog rounds, seconds per phase, time to accept of the missed rounds (s), by suite scale."""
TICK_S = 0.02
MISSED_EVERY = 10
REQUESTS_PER_S = 200


class _Missed(msgspec.Struct):
    missed_at: str
    deadline_at: str


class _Event(msgspec.Struct):
    data: _Missed


_DECODE = msgspec.json.Decoder(_Event)


def _epoch_ms(value: str) -> float:
    return datetime.fromisoformat(value).timestamp() * 1000


class MissedReader(BackgroundReader):
    """`read_committed` consumer of the Missed topic: per key, (deadline, missed_at, received) ms."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=None,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
        )
        super().__init__(consumer, poll_ms=100)
        self.seen: dict[str, tuple[float, float, int]] = {}

    def _take(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        received = now_ms()
        for records in batches.values():
            for record in records:
                if record.key is None or record.value is None:
                    continue
                data = _DECODE.decode(record.value).data
                self.seen.setdefault(
                    record.key.decode(),
                    (_epoch_ms(data.deadline_at), _epoch_ms(data.missed_at), received),
                )

    async def wait_for(self, keys: set[str], timeout: float) -> None:  # noqa: ASYNC109
        give_up = time.monotonic() + timeout
        while not keys <= self.seen.keys() and time.monotonic() < give_up:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def _stream(
    producer: AIOKafkaProducer, topic: str, requests_per_s: float, seconds: float, tta_s: int, tag: str
) -> tuple[set[str], float]:
    """`requests_per_s` requests in ticks; every tenth expires after `tta_s`, the others get a join.
    Returns the expiring chat ids and the events/s produced."""
    expiring: set[str] = set()
    events = 0
    started = time.monotonic()
    for tick in range(int(seconds / TICK_S)):
        delay = started + tick * TICK_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        while len(expiring) * MISSED_EVERY < int((tick + 1) * TICK_S * requests_per_s):
            for n in range(MISSED_EVERY):
                chat_id = f"{tag}-{len(expiring):07d}-{n}"
                at = now_ms()
                tta = tta_s if n == 0 else 3600
                value = traffic.handoff_requested(chat_id, SITE_ID, at, time_to_accept_seconds=tta)
                await producer.send(topic, value, key=chat_id.encode())
                events += 1
                if n:
                    joined = traffic.agent_joined(chat_id, SITE_ID, "agent-bench", at)
                    await producer.send(topic, joined, key=chat_id.encode())
                    events += 1
            expiring.add(f"{tag}-{len(expiring):07d}-0")
    await producer.flush()
    return expiring, events / (time.monotonic() - started)


def _histogram(after: dict[str, float], before: dict[str, float]) -> dict[str, Any]:
    name = "notifier_deadline_lateness_seconds"
    count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    within = after.get(f"{name}_bucket[0.05]", 0.0) - before.get(f"{name}_bucket[0.05]", 0.0)
    return {"count": int(count), "share_within_50ms": round(within / count, 4) if count else None}


async def _phase(
    worker: Any,
    producer: AIOKafkaProducer,
    reader: MissedReader,
    topic: str,
    partitions: int,
    **stream: Any,
) -> dict[str, Any]:
    before = await scrape(worker)
    started, sched_before = time.monotonic(), schedstat(worker.process.pid)
    expiring, produced = await _stream(producer, topic, **stream)
    streamed_s = time.monotonic() - started
    sched_after = schedstat(worker.process.pid)
    await reader.wait_for(expiring, stream["tta_s"] + 60.0)
    after = await scrape(worker)
    got = [reader.seen[k] for k in expiring if k in reader.seen]
    return {
        "requests_per_s": round(stream["requests_per_s"], 1),
        "events_per_s_produced": round(produced, 1),
        "missed_expected": len(expiring),
        "missed_received": len(got),
        "at_consumer": summary_ms([(received - deadline) / 1000 for deadline, _, received in got]),
        "in_worker": summary_ms([(missed - deadline) / 1000 for deadline, missed, _ in got]),
        "worker_histogram": _histogram(after, before),
        # A timer fires at the start of the turn after it fell due, and a turn ends when every
        # partition's transaction committed: the interval between one partition's commits bounds
        # the in-worker lateness (mean over the phase; the phase's tail drains without input).
        "partition_commits_per_s": round(
            _delta(after, before, "notifier_transactions_total") / partitions / streamed_s, 1
        ),
        # The worker's event-loop thread while streaming: share of the time it ran on a CPU, and
        # share it was ready to run but waited for one (a machine shared with the broker, the driver
        # and, here, other sessions' runs; /proc/PID/schedstat).
        "turns": _turns(after, before),
        "loop_thread_on_cpu": round((sched_after[0] - sched_before[0]) / 1e9 / streamed_s, 3),
        "loop_thread_waiting_for_cpu": round((sched_after[1] - sched_before[1]) / 1e9 / streamed_s, 3),
    }


def _turns(after: dict[str, float], before: dict[str, float]) -> dict[str, Any]:
    """The worker's `notifier_turn_seconds` over the phase: count, mean, and the bucket bounds
    that hold 50% / 99% of the turns (upper bounds: the histogram's resolution)."""
    name = "notifier_turn_seconds"
    count = _delta(after, before, f"{name}_count")
    if not count:
        return {"count": 0}
    bounds = sorted(
        (float(key.split("[", 1)[1].rstrip("]")), _delta(after, before, key))
        for key in after
        if key.startswith(f"{name}_bucket[") and "+Inf" not in key
    )

    def bound(q: float) -> float | None:
        return next((le * 1000 for le, seen in bounds if seen >= q * count), None)

    longer = count - next((seen for le, seen in bounds if le == 0.05), count)
    return {
        "count": int(count),
        "mean_ms": round(_delta(after, before, f"{name}_sum") / count * 1000, 1),
        "p50_at_most_ms": bound(0.5),
        "p99_at_most_ms": bound(0.99),
        "share_over_50ms": round(longer / count, 4),
    }


def _delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


async def run(bootstrap: str, workdir: Path, scale: str, half_rate: int, partitions: int) -> dict[str, Any]:
    backlog, seconds, tta_s = SIZES[scale]
    settings = await fresh_settings(bootstrap, "missed-e2e", partitions)
    producer = start_producer(bootstrap, linger_ms=5)
    await producer.start()
    workers = Workers.for_settings(settings, workdir / "logs" / "missed-e2e")
    reader = MissedReader(bootstrap, settings.topic_missed)
    await reader.start()
    try:
        await publish_directory(producer, settings, devices=0)
        events = await fill_rounds(
            bootstrap, settings.topic_chat_events, partitions, backlog, prefix="backlog"
        )
        started = time.monotonic()
        (worker,) = await workers.start(1)
        await watch_progress(bootstrap, settings.group_id, events, 900.0)
        drained_s = time.monotonic() - started
        topic = settings.topic_chat_events
        after_backlog = await _phase(
            worker,
            producer,
            reader,
            topic,
            partitions,
            requests_per_s=REQUESTS_PER_S,
            seconds=seconds,
            tta_s=tta_s,
            tag="a",
        )
        # Half the max rate in events/s: requests are 10 / 19 of the events (nine in ten joined).
        half = await _phase(
            worker,
            producer,
            reader,
            topic,
            partitions,
            requests_per_s=half_rate * MISSED_EVERY / (2 * MISSED_EVERY - 1),
            seconds=seconds,
            tta_s=tta_s,
            tag="h",
        )
    finally:
        with contextlib.suppress(Exception):
            await workers.stop()
        await reader.stop()
        await producer.stop()
    return {
        "backlog_rounds": backlog,
        "backlog_drained_s": round(drained_s, 2),
        "seconds_per_phase": seconds,
        "tta_s": tta_s,
        "after_backlog": after_backlog,
        "half_rate": half,
    }
