"""Capacity: how many pending rounds one worker process holds, and its memory per pending round
next to the cost of the heap timer alone, measured the same way (RSS growth) in the same run.

The rounds come from a changelog partition the restore benchmark filled (each round with two
targeted devices, an hour to accept): a worker process that takes over that partition restores
them all. Memory per round is (RSS of that worker once ready - RSS of an identical worker with an
empty changelog) / rounds. The baseline is a process that only builds a `heapq` of
(deadline ms, chat id) entries for as many rounds, the chat ids made the same way:
`python -m benchmarks.capacity heap N` prints its RSS growth per entry.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.rig import Workers, fresh_settings, metric_sum, rss_bytes

SETTLE_S = 2.0


def heap_alone(entries: int) -> float:
    """RSS growth per entry of a heap of (deadline ms, chat id) for `entries` rounds (this process)."""
    gc.collect()
    before = rss_bytes_self()
    heap: list[tuple[int, str]] = []
    for i in range(entries):
        heapq.heappush(heap, (1_800_000_000_000 + (i * 7919) % 600_000, f"chat-{i:010d}"))
    grown = rss_bytes_self() - before
    del heap
    return grown / entries


def rss_bytes_self() -> int:
    return rss_bytes(os.getpid())


async def heap_baseline(entries: int) -> float:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.capacity", "heap", str(entries), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"heap baseline exited with {process.returncode}")
    return float(json.loads(out)["bytes_per_entry"])


async def _settled_rss(workers: Workers) -> int:
    await asyncio.sleep(SETTLE_S)
    (worker,) = workers.fleet.workers.values()
    return rss_bytes(worker.process.pid)


async def run(
    bootstrap: str, workdir: Path, rounds: int, chat_events_topic: str, changelog_topic: str
) -> dict[str, Any]:
    empty_settings = await fresh_settings(bootstrap, "cap-empty", 1)
    empty = Workers.for_settings(empty_settings, workdir / "logs" / "capacity-empty")
    try:
        await empty.start(1)
        rss_empty = await _settled_rss(empty)
    finally:
        await empty.stop()

    loaded_settings = await fresh_settings(
        bootstrap, "cap-loaded", 1, topic_chat_events=chat_events_topic, topic_changelog=changelog_topic
    )
    loaded = Workers.for_settings(loaded_settings, workdir / "logs" / "capacity-loaded")
    try:
        started = time.monotonic()
        (worker,) = await loaded.start(1, timeout=600.0)
        ready_s = time.monotonic() - started
        held = await metric_sum([worker], "notifier_pending_rounds")
        rss_loaded = await _settled_rss(loaded)
    finally:
        await loaded.stop()
    heap = await heap_baseline(rounds)
    per_round = (rss_loaded - rss_empty) / rounds
    return {
        "rounds": rounds,
        "pending_rounds_held": int(held),
        "worker_start_to_ready_s": round(ready_s, 2),
        "rss_empty_bytes": rss_empty,
        "rss_loaded_bytes": rss_loaded,
        "bytes_per_round": round(per_round, 1),
        "heap_alone_bytes_per_round": round(heap, 1),
        "bytes_per_round_beyond_heap": round(per_round - heap, 1),
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "heap":
        print(json.dumps({"bytes_per_entry": heap_alone(int(sys.argv[2]))}))
        return
    raise SystemExit("usage: python -m benchmarks.capacity heap N")


if __name__ == "__main__":
    main()
