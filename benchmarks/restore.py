"""Restore time: partition assignment to ready with N pending rounds in the changelog.

`python -m benchmarks.restore [--rounds N] [--json FILE]`

In the same run and on the same data (one changelog partition holding N pending rounds):
  * baseline: a bare aiokafka `read_committed` consumer reading the partition to its end;
  * measured: the worker's take-over of the partition (`Ownership`'s path: transactional
    producer init, `restore_partition`, timer heap rebuilt).
Reports both and `baseline_s / restore_s` (target: 1M rounds < 20 s and ratio >= 0.5).
Part of the suite (`python -m benchmarks`), which calls `measure` on its own broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from devtools.changelog_fill import fill_changelog
from devtools.kafka_broker import KafkaBroker
from service.kafka.restore import restore_partition
from service.kafka.topics import ensure_topics
from service.kafka.transactions import start_partition_producer
from service.settings import Settings


async def bare_read(bootstrap: str, topic: str) -> tuple[float, int]:
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        isolation_level="read_committed",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    started = time.perf_counter()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        count = 0
        while await consumer.position(tp) < end:
            batches = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
            count += len(batches.get(tp, []))
    finally:
        await consumer.stop()
    return time.perf_counter() - started, count


async def worker_restore(settings: Settings) -> tuple[float, int]:
    started = time.perf_counter()
    producer = await start_partition_producer(settings, 0)
    store = await restore_partition(settings, 0)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return elapsed, store.pending_count


async def measure(bootstrap: str, rounds: int, prefix: str = "bench") -> dict[str, Any]:
    """Fill `<prefix>.changelog` partition 0 with `rounds` pending rounds on a running broker, then
    time the bare read and the worker's restore of it (the suite reuses the filled changelog)."""
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_chat_events=f"{prefix}.chat-events",
        topic_changelog=f"{prefix}.changelog",
        group_id=f"{prefix}-notifier",
    )
    await ensure_topics(settings, 1, 1)
    now = time.time_ns() // 1_000_000
    fill_started = time.perf_counter()
    await fill_changelog(bootstrap, settings.topic_changelog, 0, rounds, now, now + 3_600_000)
    fill_s = time.perf_counter() - fill_started
    baseline_s, read = await bare_read(bootstrap, settings.topic_changelog)
    restore_s, pending = await worker_restore(settings)
    return {
        "rounds": rounds,
        "changelog_topic": settings.topic_changelog,
        "fill_s": round(fill_s, 2),
        "baseline_bare_consumer_s": round(baseline_s, 2),
        "baseline_records": read,
        "worker_restore_s": round(restore_s, 2),
        "restored_pending_rounds": pending,
        "ratio_baseline_over_restore": round(baseline_s / restore_s, 3),
    }


async def run(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="restore-bench-") as workdir:
        broker = KafkaBroker(Path(workdir))
        await asyncio.to_thread(broker.start)
        try:
            return await measure(broker.bootstrap_servers, rounds)
        finally:
            await asyncio.to_thread(broker.stop)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args.rounds))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
