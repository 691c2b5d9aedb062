"""Event throughput: one worker process vs a bare aiokafka transactional consume->produce loop, and
scale-out (two worker processes vs one), all on the same pre-filled chat-events topic.

The input: `rounds` rounds (a `handoff_requested`, then an `agent_joined` or `ended`) spread over
the topic's partitions, written before any consumer starts. Each contender reads it from the start
with a consumer group of its own, `read_committed`, at most `kafka_max_batch_records` records per
poll, and commits each partition's batch in a transaction of that partition's own producer (the
worker writes its changelog and the consumed offsets; the bare loop writes one record per input
record to a topic of its own and the offsets). The driver measures every contender the same way: it
samples the group's committed offsets every 100 ms and reports the rate between the first and the
last sample that moved them.

`python -m benchmarks.throughput bare BOOTSTRAP GROUP IN_TOPIC OUT_TOPIC BATCH` runs the bare loop
(the suite starts it as a process of its own, like a worker).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.rig import Workers, fill_rounds, fresh_settings, publish_directory, ratio, start_producer
from service.kafka.topics import ensure_topics
from service.settings import Settings

SAMPLE_S = 0.1


async def bare_loop(bootstrap: str, group: str, in_topic: str, out_topic: str, batch: int) -> None:
    """Consume `in_topic` and, per partition and poll, copy the records to `out_topic` in one
    transaction of that partition's producer together with the consumed offsets. Runs until killed."""
    consumer = AIOKafkaConsumer(
        in_topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    producers: dict[int, AIOKafkaProducer] = {}
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=250, max_records=batch)
            for tp, records in batches.items():
                producer = producers.get(tp.partition)
                if producer is None:
                    producer = AIOKafkaProducer(
                        bootstrap_servers=bootstrap,
                        transactional_id=f"{group}-{tp.partition}",
                        enable_idempotence=True,
                        acks="all",
                        linger_ms=5,
                    )
                    await producer.start()
                    producers[tp.partition] = producer
                async with producer.transaction():
                    futures = [
                        await producer.send(out_topic, r.value, key=r.key, partition=tp.partition)
                        for r in records
                    ]
                    await producer.send_offsets_to_transaction({tp: records[-1].offset + 1}, group)
                await asyncio.gather(*futures)
    finally:
        for producer in producers.values():
            await producer.stop()
        await consumer.stop()


async def committed_total(admin: AIOKafkaAdminClient, group: str) -> int:
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except Exception:  # noqa: BLE001 - the group may not exist yet; progress is then 0
        return 0
    return sum(max(0, meta.offset) for meta in offsets.values())


async def watch_progress(
    bootstrap: str,
    group: str,
    total: int,
    timeout: float,  # noqa: ASYNC109 - a bound on a polling loop, like OutputReader.wait_for
    alive: Any = None,
) -> dict[str, float]:
    """Sample the group's committed offsets until they reach `total`; the sustained rate in between."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    try:
        while True:
            done = await committed_total(admin, group)
            samples.append((time.monotonic(), done))
            if done >= total:
                break
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"group {group} committed {done}/{total} events after {timeout}s")
            if alive is not None and not alive():
                raise RuntimeError(f"the consumer of group {group} exited early")
            await asyncio.sleep(SAMPLE_S)
    finally:
        await admin.close()
    moving = [s for s in samples if s[1] > 0]
    first, last = moving[0], moving[-1]
    elapsed = last[0] - first[0]
    events = last[1] - first[1]
    if elapsed <= 0 or events <= 0:  # everything in one sample interval: bound it by the interval
        elapsed, events = SAMPLE_S, last[1]
    return {"events": total, "seconds": round(elapsed, 3), "events_per_s": round(events / elapsed, 1)}


async def run_bare(
    bootstrap: str, input_topic: str, partitions: int, total: int, batch: int
) -> dict[str, float]:
    group = f"bare-{time.time_ns() % 10**9}"
    out_topic = f"{group}.out"
    await ensure_topics(
        Settings(kafka_bootstrap_servers=bootstrap, topic_chat_events=out_topic), partitions, 1
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.throughput",
        "bare",
        bootstrap,
        group,
        input_topic,
        out_topic,
        str(batch),
    )
    try:
        return await watch_progress(bootstrap, group, total, 600.0, lambda: process.returncode is None)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


async def run_workers(
    base: Settings, input_topic: str, partitions: int, total: int, count: int, log_dir: Path
) -> dict[str, float]:
    settings = await fresh_settings(
        base.kafka_bootstrap_servers,
        f"tp{count}",
        partitions,
        topic_chat_events=input_topic,
        topic_agents=base.topic_agents,
        topic_sites=base.topic_sites,
    )
    workers = Workers.for_settings(settings, log_dir / f"throughput-{count}")
    try:
        for i in range(count):
            await workers.fleet.start(f"worker-{i}")

        def alive() -> bool:
            return all(w.process.returncode is None for w in workers.fleet.workers.values())

        return await watch_progress(base.kafka_bootstrap_servers, settings.group_id, total, 600.0, alive)
    finally:
        await workers.stop()


async def run(bootstrap: str, rounds: int, partitions: int, log_dir: Path) -> dict[str, Any]:
    base = await fresh_settings(bootstrap, "throughput", partitions)
    producer = start_producer(bootstrap)
    await producer.start()
    try:
        await publish_directory(producer, base, devices=0)
    finally:
        await producer.stop()
    fill_started = time.monotonic()
    total = await fill_rounds(bootstrap, base.topic_chat_events, partitions, rounds)
    fill_s = time.monotonic() - fill_started
    batch = base.kafka_max_batch_records
    bare = await run_bare(bootstrap, base.topic_chat_events, partitions, total, batch)
    one = await run_workers(base, base.topic_chat_events, partitions, total, 1, log_dir)
    two = await run_workers(base, base.topic_chat_events, partitions, total, 2, log_dir)
    return {
        "rounds": rounds,
        "events": total,
        "partitions": partitions,
        "batch_records": batch,
        "fill_s": round(fill_s, 2),
        "bare_loop": bare,
        "worker": one,
        "two_workers": two,
        "ratio_worker_over_bare": ratio(one["events_per_s"], bare["events_per_s"]),
        "ratio_two_over_one": ratio(two["events_per_s"], one["events_per_s"]),
    }


def main() -> None:
    if len(sys.argv) == 7 and sys.argv[1] == "bare":
        bootstrap, group, in_topic, out_topic, batch = sys.argv[2:]
        asyncio.run(bare_loop(bootstrap, group, in_topic, out_topic, int(batch)))
        return
    raise SystemExit("usage: python -m benchmarks.throughput bare BOOTSTRAP GROUP IN_TOPIC OUT_TOPIC BATCH")


if __name__ == "__main__":
    main()
