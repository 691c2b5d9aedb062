"""Deadline accuracy: how late Missed fires while the worker holds `pending` rounds and consumes at
a given rate (the suite passes half the max throughput it measured in the same run).

One worker process, no devices (pushes are measured on their own). First `pending` rounds with
an hour to accept are loaded and the driver waits until the worker's `notifier_pending_rounds`
shows them. Then, for `seconds`, the driver produces `rate` events/s, evenly in 20 ms ticks, in
rounds of a request and a join or an end, except every tenth round, which gets a request only and
`tta_s` seconds to accept: that one is missed. Lateness is `missed_at - deadline_at` of each
Missed event read back (`read_committed`), and the worker's own histogram
`notifier_deadline_lateness_seconds` is read too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.latency import summary_ms
from benchmarks.rig import (
    SITE_ID,
    Workers,
    fill_rounds,
    fresh_settings,
    metric_sum,
    now_ms,
    publish_directory,
    rss_bytes,
    scrape,
    start_producer,
)
from devtools import traffic
from devtools.kafka_io import OutputReader

TICK_S = 0.02
MISSED_EVERY = 10


def _ms(value: str) -> float:
    return datetime.fromisoformat(value).timestamp() * 1000


async def run(  # noqa: PLR0915 - one scenario, read top to bottom
    bootstrap: str, workdir: Path, *, pending: int, rate: int, seconds: float, tta_s: int, partitions: int
) -> dict[str, Any]:
    settings = await fresh_settings(bootstrap, "deadlines", partitions)
    producer = start_producer(bootstrap, linger_ms=5)
    await producer.start()
    workers = Workers.for_settings(settings, workdir / "logs" / "deadlines")
    outputs = OutputReader(bootstrap, [settings.topic_missed])
    await outputs.start()
    try:
        await publish_directory(producer, settings, devices=0)
        (worker,) = await workers.start(1)
        rss_empty = rss_bytes(worker.process.pid)
        load_started = time.monotonic()
        await fill_rounds(
            bootstrap, settings.topic_chat_events, partitions, pending, tta_s=3600, close=False, prefix="bg"
        )
        give_up = time.monotonic() + 600
        while await metric_sum([worker], "notifier_pending_rounds") < pending:
            if time.monotonic() > give_up:
                raise TimeoutError("the worker did not take the background rounds in 600 s")
            await asyncio.sleep(0.2)
        load_s = time.monotonic() - load_started
        rss_loaded = rss_bytes(worker.process.pid)

        # The stream: `rate` events per second in ticks, rounds of two events, every tenth of one.
        missed_chats: set[str] = set()
        produced = 0
        round_no = 0
        started = time.monotonic()
        ticks = int(seconds / TICK_S)
        for tick in range(ticks):
            due = started + tick * TICK_S
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            target = int((tick + 1) * TICK_S * rate)
            while produced < target:
                chat_id = f"dl-{round_no:09d}"
                key = chat_id.encode()
                at = now_ms()
                missed = round_no % MISSED_EVERY == 0
                value = traffic.handoff_requested(
                    chat_id, SITE_ID, at, time_to_accept_seconds=tta_s if missed else 3600
                )
                await producer.send(settings.topic_chat_events, value, key=key)
                produced += 1
                if missed:
                    missed_chats.add(chat_id)
                else:
                    await producer.send(
                        settings.topic_chat_events,
                        traffic.agent_joined(chat_id, SITE_ID, "agent-bench", at),
                        key=key,
                    )
                    produced += 1
                round_no += 1
        await producer.flush()
        stream_s = time.monotonic() - started

        def all_missed() -> bool:
            return len({o.key for o in outputs.on(settings.topic_missed)} & missed_chats) >= len(missed_chats)

        with contextlib.suppress(AssertionError):  # what is missing then is reported as missing
            await outputs.wait_for(all_missed, tta_s + 60.0, "every Missed event")
        metrics = await scrape(worker)
    finally:
        await workers.stop()
        await outputs.stop()
        await producer.stop()
    lateness = [
        (_ms(o.value["data"]["missed_at"]) - _ms(o.value["data"]["deadline_at"])) / 1000
        for o in outputs.on(settings.topic_missed)
        if o.value is not None and o.key in missed_chats
    ]
    return {
        "pending_rounds": pending,
        "load_s": round(load_s, 2),
        "rate_events_per_s_target": rate,
        "rate_events_per_s_produced": round(produced / stream_s, 1),
        "seconds": round(stream_s, 2),
        "tta_s": tta_s,
        "missed_expected": len(missed_chats),
        "missed_received": len(lateness),
        "lateness": summary_ms(lateness),
        "histogram_count": metrics.get("notifier_deadline_lateness_seconds_count", 0.0),
        "histogram_le_50ms": metrics.get("notifier_deadline_lateness_seconds_bucket[0.05]"),
        "rss_empty_bytes": rss_empty,
        "rss_loaded_bytes": rss_loaded,
        "rss_bytes_per_round_via_events": round((rss_loaded - rss_empty) / pending, 1) if pending else None,
    }
