"""Command line: `livechat-notifier run | topics ensure | check-config` (also `python -m service`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import structlog

from service.errors import NotifierError
from service.observability.logging import configure_logging
from service.settings import Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livechat-notifier",
        description="Pushes live-chat handoff requests to agents and reports chats nobody accepted in time.",
    )
    parser.add_argument("--config", type=Path, help="YAML settings file (NOTIFIER_* variables override it)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the worker until SIGTERM")
    topics = commands.add_parser("topics", help="manage the Kafka topics").add_subparsers(
        dest="topics_command", required=True
    )
    ensure = topics.add_parser("ensure", help="create missing topics and check the changelog layout")
    ensure.add_argument("--partitions", type=int, default=12, help="partitions of new chat-events topics")
    ensure.add_argument("--replication-factor", type=int, default=3)
    commands.add_parser("check-config", help="validate settings and credential files without connecting")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log = structlog.get_logger("service")
    try:
        settings = load_settings(args.config)
        configure_logging(settings.log_level)
        if args.command == "run":
            from service.app import run_worker  # noqa: PLC0415 -- keeps `--help` and `topics` light

            return asyncio.run(run_worker(settings))
        if args.command == "topics":
            created = asyncio.run(_ensure_topics(settings, args.partitions, args.replication_factor))
            log.info("topics_ensured", created=created)
            return 0
        from service.kafka.connection import check_kafka_credentials  # noqa: PLC0415
        from service.push.senders import check_credentials  # noqa: PLC0415

        check_kafka_credentials(settings)
        check_credentials(settings)
        log.info("config_ok", settings=settings.redacted())
    except NotifierError as error:
        print(f"livechat-notifier: {error}", file=sys.stderr)  # noqa: T201 -- the CLI's error channel
        return 2
    return 0


async def _ensure_topics(settings: Settings, partitions: int, replication_factor: int) -> list[str]:
    """`topics ensure`, after the same fail-fast connection check as `run`."""
    from service.kafka.connection import check_connection  # noqa: PLC0415
    from service.kafka.topics import ensure_topics  # noqa: PLC0415

    await check_connection(settings)
    return await ensure_topics(settings, partitions, replication_factor)


if __name__ == "__main__":
    sys.exit(main())
