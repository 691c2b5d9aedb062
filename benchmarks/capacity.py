"""Capacity: how many pending rounds one worker process holds, and its memory per pending round
next to the cost of the heap timer alone, measured the same way (RSS growth) in the same run.

The rounds come from a changelog partition the restore benchmark filled (each round with two
targeted devices, an hour to accept): a worker process that takes over that partition restores
them all. Memory per round is (RSS of that worker once ready - RSS of an identical worker with an
empty changelog) / rounds. The baseline is a process that only builds a `heapq` of
(deadline ms, chat id) entries for as many rounds, the chat ids made the same way:
`python -m benchmarks.capacity heap N` prints its RSS growth per entry.

Where the memory goes: a process of its own restores a sample changelog (the same rounds, at
most `SITES_SAMPLE`) under `tracemalloc` and reports the bytes per round still allocated once
restored, by allocation site, and the traced peak during the restore (what RSS may keep of the
restore's transient allocations): `python -m benchmarks.capacity sites BOOTSTRAP TOPIC`.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import json
import linecache
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks.rig import Workers, fresh_settings, metric_sum, now_ms, rss_bytes
from devtools.changelog_fill import fill_changelog
from service.kafka.restore import restore_partition
from service.settings import Settings

SETTLE_S = 2.0
SITES_SAMPLE = 100_000
TOP_SITES = 6
_REPO = Path(__file__).resolve().parents[1]


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


def live_by_site(bootstrap: str, changelog_topic: str) -> dict[str, Any]:
    """Restore partition 0 of `changelog_topic` in this process under tracemalloc: bytes per
    round still allocated afterwards, in all and by allocation site (file:line), and the peak."""
    settings = Settings(kafka_bootstrap_servers=bootstrap, topic_changelog=changelog_topic)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    store = asyncio.run(restore_partition(settings, 0))
    after = tracemalloc.take_snapshot()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rounds = store.chat_count
    ignore = (tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__),)
    stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno")
    sites = [
        {
            "site": _site(stat.traceback[0].filename, stat.traceback[0].lineno),
            "code": linecache.getline(stat.traceback[0].filename, stat.traceback[0].lineno).strip(),
            "bytes_per_round": round(stat.size_diff / rounds, 1),
            "blocks_per_round": round(stat.count_diff / rounds, 2),
        }
        for stat in stats[:TOP_SITES]
        if stat.size_diff >= rounds / 10  # sites of fixed cost (the client, imports) are noise here
    ]
    return {
        "rounds": rounds,
        "live_bytes_per_round": round(sum(stat.size_diff for stat in stats) / rounds, 1),
        "traced_peak_bytes_per_round": round(peak / rounds, 1),
        "sites": sites,
    }


def _site(filename: str, lineno: int) -> str:
    path = Path(filename)
    if "site-packages" in path.parts:
        path = Path(*path.parts[path.parts.index("site-packages") + 1 :])
    elif path.is_relative_to(_REPO):
        path = path.relative_to(_REPO)
    return f"{path}:{lineno}"


async def sites_breakdown(bootstrap: str, rounds: int) -> dict[str, Any]:
    settings = await fresh_settings(bootstrap, "cap-sites", 1)
    now = now_ms()
    await fill_changelog(bootstrap, settings.topic_changelog, 0, rounds, now, now + 3_600_000)
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "benchmarks.capacity", "sites", bootstrap, settings.topic_changelog),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"live-bytes breakdown exited with {process.returncode}")
    result: dict[str, Any] = json.loads(out.splitlines()[-1])  # after any log line of the restore
    return result


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
    live = await sites_breakdown(bootstrap, min(rounds, SITES_SAMPLE))
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
        "live_by_site": live,
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "heap":
        print(json.dumps({"bytes_per_entry": heap_alone(int(sys.argv[2]))}))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "sites":
        print(json.dumps(live_by_site(sys.argv[2], sys.argv[3])))
        return
    raise SystemExit("usage: python -m benchmarks.capacity heap N | sites BOOTSTRAP CHANGELOG_TOPIC")


if __name__ == "__main__":
    main()
