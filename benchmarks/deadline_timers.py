"""Why per-chat deadlines live in a heap and not in APScheduler — measured, in one run.

`python -m benchmarks.deadline_timers [--rounds N] [--apscheduler-jobs M] [--json FILE]`

Measures, on this machine and in this process:
  * APScheduler 3.11 (AsyncIOScheduler, memory job store, date trigger): cost of adding and of
    removing a job, memory per job, and what it does with a job that runs 2 s late;
  * the worker's own structure (`PartitionStore`: dict of rounds + heap of timers): cost of adding a
    pending round with its timer, memory per round, and the longest single call while N rounds
    are held and a burst of them falls due.

The suite's `timers` section (`benchmarks.timer_peers`, issue #13) takes the comparison further:
each design used as a consumer would use it, in a process of its own, for adds/s, RSS and traced
bytes per pending round, and firing lateness under steady load and in a burst, in the suite's table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from service.domain.rounds import DeviceRef, PendingRound
from service.partition.step import MAX_TIMERS_PER_STEP
from service.state.store import PartitionStore

T0 = 1_800_000_000_000


def _noop() -> None:
    return None


async def apscheduler_costs(jobs: int) -> dict[str, float]:
    scheduler = AsyncIOScheduler()
    scheduler.start()
    run_at = datetime.now(UTC) + timedelta(days=1)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    added = [scheduler.add_job(_noop, "date", run_date=run_at) for _ in range(jobs)]
    add_s = time.perf_counter() - started
    memory = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    started = time.perf_counter()
    for job in added:
        job.remove()
    remove_s = time.perf_counter() - started

    # A date job whose time passes while the loop is blocked for 2 s (default misfire_grace_time=1).
    ran: list[bool] = []
    scheduler.add_job(
        lambda: ran.append(True), "date", run_date=datetime.now(UTC) + timedelta(milliseconds=100)
    )
    time.sleep(2.0)  # noqa: ASYNC251 -- deliberately block the loop, as a long pause or a burst would
    await asyncio.sleep(0.5)
    scheduler.shutdown(wait=False)
    return {
        "jobs": jobs,
        "add_us": add_s / jobs * 1e6,
        "remove_us": remove_s / jobs * 1e6,
        "bytes_per_job": memory / jobs,
        "late_job_ran": float(bool(ran)),
    }


def _fill(store: PartitionStore, rounds: int) -> tuple[float, float]:
    """Add `rounds` pending rounds with their timers; return (total s, worst single add s)."""
    targets = (DeviceRef("agent-0001", "device-0001"),)
    worst = 0.0
    started = time.perf_counter()
    for i in range(rounds):
        call = time.perf_counter()
        chat_id = f"chat-{i:012d}"
        deadline = T0 + (i * 7919) % 600_000
        store.put(PendingRound(f"req-{i:012d}", chat_id, "site-0001", T0, deadline, targets, targets))
        store.schedule(chat_id, deadline)
        worst = max(worst, time.perf_counter() - call)
    return time.perf_counter() - started, worst


def store_costs(rounds: int) -> dict[str, float]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = PartitionStore(0)
    _fill(kept, rounds)
    memory = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del kept
    gc.collect()
    store = PartitionStore(0)
    add_s, worst = _fill(store, rounds)
    # With a million live objects, one full cyclic-GC pass is what blocks the loop longest.
    started = time.perf_counter()
    gc.collect()
    full_gc_s = time.perf_counter() - started
    # What the worker does periodically (service/app.py): move long-lived state out of the
    # collector's scans. Rounds hold no reference cycles, so reference counting still frees them.
    gc.freeze()
    started = time.perf_counter()
    gc.collect()
    frozen_gc_s = time.perf_counter() - started
    gc.unfreeze()
    # A burst falls due: the worker pops at most MAX_TIMERS_PER_STEP per step.
    pops = []
    for _ in range(5):
        call = time.perf_counter()
        store.pop_due(T0 + 600_000, MAX_TIMERS_PER_STEP)
        pops.append(time.perf_counter() - call)
    return {
        "rounds": rounds,
        "add_us": add_s / rounds * 1e6,
        "worst_add_ms": worst * 1e3,
        "full_gc_ms": full_gc_s * 1e3,
        "full_gc_after_freeze_ms": frozen_gc_s * 1e3,
        "bytes_per_round": memory / rounds,
        "pop_step_ms_median": statistics.median(pops) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=1_000_000)
    parser.add_argument("--apscheduler-jobs", type=int, default=20_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    aps = asyncio.run(apscheduler_costs(args.apscheduler_jobs))
    heap = store_costs(args.rounds)
    result: dict[str, Any] = {
        "apscheduler": aps,
        "partition_store": heap,
        "add_cost_ratio": aps["add_us"] / heap["add_us"],
    }
    print(
        f"APScheduler ({aps['jobs']:,} date jobs): add {aps['add_us']:.1f} us, "
        f"remove {aps['remove_us']:.1f} us, {aps['bytes_per_job']:.0f} B/job; "
        f"job 2 s late ran: {bool(aps['late_job_ran'])}"
    )
    print(
        f"PartitionStore ({heap['rounds']:,} pending rounds): add round+timer {heap['add_us']:.2f} us "
        f"(worst single call {heap['worst_add_ms']:.2f} ms; a full GC pass {heap['full_gc_ms']:.0f} ms, "
        f"{heap['full_gc_after_freeze_ms']:.1f} ms after gc.freeze()), "
        f"{heap['bytes_per_round']:.0f} B/round incl. the round, "
        f"popping {MAX_TIMERS_PER_STEP} due timers {heap['pop_step_ms_median']:.2f} ms"
    )
    print(f"APScheduler add / heap add = {result['add_cost_ratio']:.0f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
