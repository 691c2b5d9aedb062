"""The benchmark suite of issue #6: every figure next to the baseline that bounds it, measured in the
same run on the same broker, and their ratio, compared with the issue's targets.

`python -m benchmarks [--scale smoke|full] [--out DIR]`

Starts one Kafka broker (devtools.kafka_broker) for the whole run and, in order:
  throughput + scale-out (benchmarks.throughput), deadline accuracy at half the measured max
  throughput (benchmarks.deadlines), restore (benchmarks.restore), capacity on the changelog the
  restore benchmark filled (benchmarks.capacity), push cost and rate (benchmarks.push), and
  handoff-to-push latency (benchmarks.latency).
Writes `results.json`, `results.png` and `table.md` into `--out` (default: docs/benchmarks for
`full`, .cache/benchmarks/smoke for `smoke`) and prints the table. It commits nothing. A section
that fails is recorded with its error and the command exits 1 after the others ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import (
    capacity,
    deadlines,
    directory,
    fanout_cpu,
    latency,
    missed_e2e,
    peer_kafka_streams,
    push,
    restore,
    throughput,
    timer_peers,
)
from benchmarks.report import evaluate, render_table, write_plot
from devtools.kafka_broker import KafkaBroker
from service.observability.logging import configure_logging

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Scale:
    name: str
    throughput_rounds: int
    partitions: int
    deadline_pending: int
    deadline_seconds: float
    deadline_tta_s: int
    deadline_rate_cap: int
    restore_rounds: int
    pushes: int
    push_concurrency: int
    latency_seconds: float


SCALES = {
    "smoke": Scale("smoke", 2_000, 4, 5_000, 4.0, 2, 2_000, 20_000, 100, 20, 2.0),
    "full": Scale("full", 100_000, 4, 100_000, 60.0, 10, 1_000_000, 1_000_000, 5_000, 200, 30.0),
}
PROVIDER_LATENCY_S = 0.020
HANDOFF_RATE = 200


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH, as in a dev shell
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": commit,
        "loadavg_at_start": os.getloadavg(),
    }


async def section(
    results: dict[str, Any], name: str, body: Callable[[], Awaitable[dict[str, Any]]]
) -> dict[str, Any] | None:
    print(f"-- {name} ...", flush=True)
    started = time.monotonic()
    try:
        value = await body()
    except Exception as error:  # noqa: BLE001 - recorded, and the suite exits 1 at the end
        traceback.print_exc()
        results[name] = {"error": repr(error)}
        return None
    value["section_s"] = round(time.monotonic() - started, 1)
    results[name] = value
    print(f"   {name} done in {value['section_s']} s", flush=True)
    return value


SECTIONS = (
    "throughput",
    "deadlines",
    "restore",
    "capacity",
    "push",
    "latency",
    "kafka_streams",
    "timers",
    "directory",
    "missed_e2e",
    "fanout_cpu",
)


async def scale_and_e2e_sections(
    results: dict[str, Any], only: frozenset[str], bootstrap: str, workdir: Path, scale: Scale, rate: int
) -> None:
    """Issue #13: the whole directory in one worker; Missed lateness at a downstream consumer after
    a backlog and at half load (`rate`, half the measured max events/s)."""
    if "directory" in only:
        await section(results, "directory", lambda: directory.run(bootstrap, workdir, scale.name))
    if "fanout_cpu" in only:
        await section(
            results, "fanout_cpu", lambda: fanout_cpu.run(bootstrap, workdir, scale.name, PROVIDER_LATENCY_S)
        )
    if "missed_e2e" in only:
        await section(
            results,
            "missed_e2e",
            lambda: missed_e2e.run(bootstrap, workdir, scale.name, rate, scale.partitions),
        )


async def run_suite(
    scale: Scale, workdir: Path, only: frozenset[str] = frozenset(SECTIONS)
) -> dict[str, Any]:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"python -m benchmarks --scale {scale.name}",
        "scale": asdict(scale),
        "machine": machine(),
    }
    broker = KafkaBroker(workdir / "broker")
    await asyncio.to_thread(broker.start)
    bootstrap = broker.bootstrap_servers
    try:
        tp = None
        if "throughput" in only:
            tp = await section(
                results,
                "throughput",
                lambda: throughput.run(
                    bootstrap, scale.throughput_rounds, scale.partitions, workdir / "logs"
                ),
            )
        # Half the measured max; without a throughput figure (skipped or failed), half of 20,000/s.
        max_rate = tp["worker"]["events_per_s"] if tp else 20_000.0
        rate = int(min(scale.deadline_rate_cap, max_rate / 2))
        if "deadlines" in only:
            await section(
                results,
                "deadlines",
                lambda: deadlines.run(
                    bootstrap,
                    workdir,
                    pending=scale.deadline_pending,
                    rate=rate,
                    seconds=scale.deadline_seconds,
                    tta_s=scale.deadline_tta_s,
                    partitions=scale.partitions,
                ),
            )
        if only & {"restore", "capacity"}:
            # Capacity reuses the changelog the restore benchmark filled.
            rs = await section(
                results, "restore", lambda: restore.measure(bootstrap, scale.restore_rounds, "restore")
            )
            if rs is not None and "capacity" in only:
                await section(
                    results,
                    "capacity",
                    lambda: capacity.run(
                        bootstrap, workdir, scale.restore_rounds, "restore.chat-events", rs["changelog_topic"]
                    ),
                )
        if "push" in only:
            await section(
                results,
                "push",
                lambda: push.run(workdir, scale.pushes, scale.push_concurrency, PROVIDER_LATENCY_S),
            )
        if "latency" in only:
            await section(
                results,
                "latency",
                lambda: latency.run(
                    bootstrap, workdir, HANDOFF_RATE, scale.latency_seconds, PROVIDER_LATENCY_S
                ),
            )
        if "kafka_streams" in only:
            # Issue #13: the worker next to a Kafka Streams application doing the same job.
            await section(
                results,
                "kafka_streams",
                lambda: peer_kafka_streams.run(bootstrap, workdir, scale.name, scale.partitions),
            )
        await scale_and_e2e_sections(results, only, bootstrap, workdir, scale, rate)
        if "timers" in only:
            # Issue #13: one APScheduler job per chat vs the worker's timers, a process each.
            await section(results, "timers", lambda: timer_peers.run(scale.name))
    finally:
        await asyncio.to_thread(broker.stop)
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    results["summary"] = evaluate(results)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--only",
        type=lambda value: frozenset(value.split(",")),
        default=frozenset(SECTIONS),
        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)}); for profiling one",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep worker logs in OUT/logs")
    args = parser.parse_args(argv)
    if unknown := args.only - set(SECTIONS):
        parser.error(f"unknown section(s) in --only: {', '.join(sorted(unknown))}")
    scale = SCALES[args.scale]
    # As the worker does (push_delivered is debug: filtered out); warnings only, to keep the output short.
    configure_logging("WARNING")
    out: Path = args.out or (
        REPO / "docs" / "benchmarks" if scale.name == "full" else REPO / ".cache" / "benchmarks" / "smoke"
    )
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="notifier-bench-") as tmp:
        workdir = out / "run" if args.keep_logs else Path(tmp)
        results = asyncio.run(run_suite(scale, workdir, args.only))
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = render_table(results)
    (out / "table.md").write_text(table + "\n")
    write_plot(results, out / "results.png")
    print(table)
    print(f"\nwrote {out / 'results.json'}, {out / 'results.png'}, {out / 'table.md'}")
    failed = [name for name, value in results.items() if isinstance(value, dict) and "error" in value]
    if failed:
        print(f"sections that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
