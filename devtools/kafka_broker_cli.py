"""The command line of the Kafka broker harness, run as ``python -m devtools.kafka_broker``.

``fetch`` downloads the broker's jars into the cache (:func:`devtools.kafka_jars.ensure_kafka_jars`) and
prints their directory; ``run`` starts a :class:`~devtools.kafka_broker.KafkaBroker`, prints its
bootstrap address and keeps it in the foreground until Ctrl-C or SIGTERM (or until it dies: exit 1).
Harness errors exit 2 with the message.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from devtools.kafka_broker import KafkaBroker
from devtools.kafka_jars import CACHE_ENV, KafkaHarnessError, ensure_kafka_jars, kafka_version


def _cmd_fetch(args: argparse.Namespace) -> int:
    began = time.monotonic()
    lib = ensure_kafka_jars(args.cache_dir)
    print(lib)
    print(f"Kafka {kafka_version(lib)} ready in {time.monotonic() - began:.1f} s", file=sys.stderr)
    return 0


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    raise KeyboardInterrupt


def _cmd_run(args: argparse.Namespace) -> int:
    workdir: Path | None = args.workdir
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    broker = KafkaBroker(workdir, port=args.port, cache_dir=args.cache_dir)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)  # also when started with SIGINT ignored
    try:
        broker.start()
        print(broker.bootstrap_servers, flush=True)
        print(
            f"Kafka {broker.version} serving on {broker.bootstrap_servers} (started in "
            f"{broker.last_start_seconds:.1f} s); log {broker.log_path}; Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        code = broker.wait()
    except KeyboardInterrupt:
        print("stopping the broker", file=sys.stderr, flush=True)
        return 0
    finally:
        if workdir is None:
            broker.close()
        else:
            broker.stop()
    print(f"broker exited with code {code}\n{broker.failure_report()}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.kafka_broker",
        description="A real single-node Apache Kafka broker for tests and local runs, without Docker.",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help=f"jar cache (default: ${CACHE_ENV} or .cache/kafka)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download the broker's jars into the cache and exit")
    run = sub.add_parser("run", help="run a broker in the foreground until Ctrl-C or SIGTERM")
    run.add_argument("--port", type=int, default=None, help="PLAINTEXT port (default: a free one)")
    run.add_argument(
        "--workdir", type=Path, default=None, help="keep data here (default: a temporary directory)"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            return _cmd_fetch(args)
        return _cmd_run(args)
    except KafkaHarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
