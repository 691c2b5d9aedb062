"""Command line of the fault-injection run: `python -m devtools.chaos --help`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from devtools.chaos.run import Chaos, ChaosConfig, write_report


def main() -> None:
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(prog="python -m devtools.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--rate", type=float, default=defaults.rate_per_s, help="rounds started per second")
    parser.add_argument("--partitions", type=int, default=defaults.partitions)
    parser.add_argument("--kills", type=int, default=defaults.kills, help="SIGKILLs of a worker")
    parser.add_argument("--graceful-restarts", type=int, default=defaults.graceful_restarts)
    parser.add_argument("--pauses", type=int, default=defaults.pauses, help="SIGSTOP/SIGCONT zombies")
    parser.add_argument("--broker-restarts", type=int, default=defaults.broker_restarts)
    parser.add_argument("--scale-to", type=int, default=defaults.scale_to)
    parser.add_argument("--report", type=Path, help="write the JSON report here")
    parser.add_argument("--workdir", type=Path, help="keep broker data and worker logs here")
    args = parser.parse_args()
    config = ChaosConfig(
        seed=args.seed,
        rounds=args.rounds,
        rate_per_s=args.rate,
        partitions=args.partitions,
        kills=args.kills,
        graceful_restarts=args.graceful_restarts,
        pauses=args.pauses,
        broker_restarts=args.broker_restarts,
        scale_to=args.scale_to,
    )
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        workdir = args.workdir or Path(tmp)
        report = asyncio.run(Chaos(config, workdir).run())
    print(json.dumps(asdict(config) | asdict(report) | {"passed": report.passed}, indent=2))
    if args.report:
        write_report(report, args.report)
    sys.exit(0 if report.passed else 1)


if __name__ == "__main__":
    main()
