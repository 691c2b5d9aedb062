"""The obvious Python design for per-chat deadlines (one APScheduler job per chat) next to the
worker's own mechanism, each in a process of its own, measured the same way in the same run.

`benchmarks.deadline_timers` measures the two structures' raw costs inside one process. This
module runs each design as a consumer would use it, in a fresh interpreter (`python -m
benchmarks.timer_peers --contender NAME --scale smoke|full`, one JSON line on stdout), so RSS is
the design's alone:

* `apscheduler`: what a team would write first with the package the design card names
  (APScheduler 3.11, pinned in pyproject): one `AsyncIOScheduler`, its default memory job store,
  `add_job(fire, "date", run_date=deadline, id=chat_id)` per request, `remove_job(chat_id)` on
  join, default `misfire_grace_time` and `coalesce`; `fire` is a coroutine, so it runs on the
  event loop (a plain function would run in the loop's thread pool).
* `worker`: the worker's `PartitionStore` (dict of `PendingRound` + heap of timers, rounds never
  cancelled but forgotten on join, their timers skipped when they pop) driven as the consumer
  loop drives it: wait `poll_timeout_ms` (or until a record arrives), then pop at most
  `MAX_TIMERS_PER_STEP` due timers and fire those whose round is still pending.

Each process: (1) adds `pending` rounds due in a day, in batches of 500 with a yield to the loop
in between (as a consumer handles one poll's records), for adds/s; RSS (and, in a separate
process with `--tracemalloc`, traced bytes) after a `gc.collect()`, per pending round. (2) With
those held, a steady load of `probe_rate` requests/s for `probe_seconds`, each due `tta_ms`
later; 9 in 10 are closed (joined) halfway, the 10th fires: lateness = when it fired minus its
deadline. (3) A burst of `burst` rounds all due at one instant: lateness of each, and how many
fired at all (APScheduler drops a job that starts over `misfire_grace_time`, 1 s, late). Kafka is
left out on both sides (the worker's Kafka-inclusive lateness is the `deadlines` section): what
differs is only the timer mechanism.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.rig import rss_bytes
from service.domain.rounds import DeviceRef, PendingRound
from service.kafka.polling import poll_timeout_ms
from service.partition.step import MAX_TIMERS_PER_STEP
from service.state.store import PartitionStore

CONTENDERS = ("apscheduler", "worker")
BATCH = 500


@dataclass(frozen=True)
class TimerSize:
    pending: int
    probe_rate: int
    probe_seconds: float
    tta_ms: int
    traced_pending: int
    """Rounds for the tracemalloc process: tracemalloc slows APScheduler's adds ~10x, and bytes
    per round hardly depend on how many are held."""
    burst: int
    """Rounds due at one instant, added after the steady load."""


SIZES = {
    "smoke": TimerSize(5_000, 200, 2.0, 500, 5_000, 1_000),
    "full": TimerSize(100_000, 500, 20.0, 2_000, 10_000, 10_000),
}
FAR_MS = 86_400_000
TARGETS = (DeviceRef("agent-0001", "device-0001"),)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Design:
    """What a consumer does with its timers: start a round, close it, and the firing machinery."""

    def __init__(self) -> None:
        self.lateness_ms: list[float] = []

    def fired(self, deadline_ms: int) -> None:
        self.lateness_ms.append(time.time() * 1e3 - deadline_ms)

    def start(self) -> None: ...
    def add(self, chat_id: str, deadline_ms: int) -> None: ...
    def close(self, chat_id: str) -> None: ...
    async def stop(self) -> None: ...


class ApschedulerDesign(Design):
    def __init__(self) -> None:
        super().__init__()
        from apscheduler.schedulers.asyncio import AsyncIOScheduler  # noqa: PLC0415 - only this process

        self.scheduler = AsyncIOScheduler(timezone=UTC)

    def start(self) -> None:
        self.scheduler.start()

    async def _fire(self, deadline_ms: int) -> None:
        self.fired(deadline_ms)

    def add(self, chat_id: str, deadline_ms: int) -> None:
        self.scheduler.add_job(
            self._fire,
            "date",
            run_date=datetime.fromtimestamp(deadline_ms / 1e3, UTC),
            id=chat_id,
            args=(deadline_ms,),
        )

    def close(self, chat_id: str) -> None:
        self.scheduler.remove_job(chat_id)

    async def stop(self) -> None:
        self.scheduler.shutdown(wait=False)


class WorkerDesign(Design):
    def __init__(self) -> None:
        super().__init__()
        self.store = PartitionStore(0)
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            timeout_s = poll_timeout_ms(now_ms(), [self.store.next_due_ms()]) / 1e3
            try:
                async with asyncio.timeout(timeout_s):  # the poll: returns early when records arrive
                    await self._arrived.wait()
            except TimeoutError:
                pass
            self._arrived.clear()
            for chat_id in self.store.pop_due(now_ms(), MAX_TIMERS_PER_STEP):
                state = self.store.get(chat_id)
                if isinstance(state, PendingRound):
                    self.store.forget(chat_id)
                    self.fired(state.deadline_ms)

    def add(self, chat_id: str, deadline_ms: int) -> None:
        at = now_ms()
        self.store.put(
            PendingRound(f"req-{chat_id}", chat_id, "site-0001", at, deadline_ms, TARGETS, TARGETS)
        )
        self.store.schedule(chat_id, deadline_ms)
        self._arrived.set()

    def close(self, chat_id: str) -> None:
        self.store.forget(chat_id)
        self._arrived.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _design(name: str) -> Design:
    return ApschedulerDesign() if name == "apscheduler" else WorkerDesign()


async def _fill(design: Design, pending: int) -> float:
    """Add `pending` rounds due in a day, one poll's batch at a time; seconds taken."""
    far = now_ms() + FAR_MS
    started = time.perf_counter()
    for first in range(0, pending, BATCH):
        for i in range(first, min(first + BATCH, pending)):
            design.add(f"chat-{i:012d}", far + i % 600_000)
        await asyncio.sleep(0)
    return time.perf_counter() - started


async def _probe(design: Design, rate: int, seconds: float, tta_ms: int) -> int:
    """Requests at `rate`/s for `seconds`, each due `tta_ms` later; 9 in 10 closed halfway.
    Returns how many should fire; waits until their deadlines have passed by 3 s."""
    loop = asyncio.get_running_loop()
    expected = 0
    count = int(rate * seconds)
    started = time.perf_counter()
    for i in range(count):
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        chat_id = f"probe-{i:08d}"
        design.add(chat_id, now_ms() + tta_ms)
        if i % 10 == 9:
            expected += 1
        else:
            loop.call_later(tta_ms / 2e3, design.close, chat_id)
    await asyncio.sleep(tta_ms / 1e3 + 3.0)
    return expected


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _burst(design: Design, size: int, adds_per_s: float) -> None:
    """`size` rounds all due at one instant (a peak's deadlines coming due together), added one
    batch at a time early enough for the last add to land well before that instant; waits until
    3 s past it."""
    due = now_ms() + int((1.0 + 2 * size / adds_per_s) * 1e3)
    for first in range(0, size, BATCH):
        for i in range(first, min(first + BATCH, size)):
            design.add(f"burst-{i:08d}", due)
        await asyncio.sleep(0)
    await asyncio.sleep(max(0.0, due / 1e3 - time.time()) + 3.0)


def _lateness(prefix: str, late: list[float]) -> dict[str, float | None]:
    return {
        f"{prefix}p50_ms": _round(statistics.median(late) if late else None),
        f"{prefix}p99_ms": _round(_percentile(late, 0.99)),
        f"{prefix}max_ms": _round(max(late, default=None)),
    }


async def measure(name: str, size: TimerSize, *, traced: bool) -> dict[str, Any]:
    pending = size.traced_pending if traced else size.pending
    design = _design(name)
    design.start()
    await asyncio.sleep(0.1)
    gc.collect()
    rss0 = rss_bytes(os.getpid())
    if traced:
        tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0] if traced else 0
    fill_s = await _fill(design, pending)
    gc.collect()
    result: dict[str, Any] = {
        "contender": name,
        "pending": pending,
        "adds_per_s": round(pending / fill_s, 1),
        "add_us": round(fill_s / pending * 1e6, 2),
        "rss_bytes_per_round": round((rss_bytes(os.getpid()) - rss0) / pending, 1),
    }
    if traced:
        result["traced_bytes_per_round"] = round((tracemalloc.get_traced_memory()[0] - traced0) / pending, 1)
        tracemalloc.stop()
        await design.stop()
        return result
    expected = await _probe(design, size.probe_rate, size.probe_seconds, size.tta_ms)
    late, design.lateness_ms = design.lateness_ms, []
    await _burst(design, size.burst, pending / fill_s)
    await design.stop()
    return result | {
        "fired_expected": expected,
        "fired": len(late),
        **_lateness("lateness_", late),
        "burst_fired": len(design.lateness_ms),
        **_lateness("burst_lateness_", design.lateness_ms),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def _contender(name: str, scale: str, *, traced: bool) -> dict[str, Any]:
    """One contender in a process of its own; its JSON line."""
    args = [sys.executable, "-m", "benchmarks.timer_peers", "--contender", name, "--scale", scale]
    if traced:
        args.append("--tracemalloc")
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=Path(__file__).parents[1]
    )
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"timer_peers {name} exited {process.returncode}: {stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


async def run(scale: str) -> dict[str, Any]:
    """Both designs, one after the other (never side by side on the shared cores): each once for
    adds/s, RSS and lateness, once more under tracemalloc for its traced bytes per round."""
    results: dict[str, Any] = {"size": asdict(SIZES[scale])}
    for name in CONTENDERS:
        timed = await _contender(name, scale, traced=False)
        traced = await _contender(name, scale, traced=True)
        results[name] = timed | {"traced_bytes_per_round": traced["traced_bytes_per_round"]}
    aps, ours = results["apscheduler"], results["worker"]
    results["ratio_adds_worker_over_apscheduler"] = _ratio(ours["adds_per_s"], aps["adds_per_s"])
    results["ratio_rss_apscheduler_over_worker"] = _ratio(
        aps["rss_bytes_per_round"], ours["rss_bytes_per_round"]
    )
    return results


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contender", choices=CONTENDERS, required=True)
    parser.add_argument("--scale", choices=sorted(SIZES), default="full")
    parser.add_argument("--tracemalloc", action="store_true", help="only traced bytes per round")
    args = parser.parse_args(argv)
    out(json.dumps(asyncio.run(measure(args.contender, SIZES[args.scale], traced=args.tracemalloc))))


if __name__ == "__main__":
    main()
