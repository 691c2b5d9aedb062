"""Command line: `livechat-notifier run | topics ensure | check-config | explain agent | test-push`.

Also `python -m service`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from service.errors import NotifierError
from service.observability.logging import configure_logging
from service.settings import Settings, load_settings

if TYPE_CHECKING:  # imported lazily below, like every Kafka module, to keep `--help` light
    from service.kafka.topics import EnsureReport


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
    ensure.add_argument(
        "--partitions",
        type=_positive_int,
        help="partitions of a new chat-events topic, its changelog and outputs (default 12)",
    )
    ensure.add_argument(
        "--replication-factor",
        type=_positive_int,
        help="replicas of new topics (default: the brokers' default.replication.factor)",
    )
    commands.add_parser("check-config", help="validate settings and credential files without connecting")
    explain = commands.add_parser("explain", help="say why a phone would (not) buzz").add_subparsers(
        dest="explain_command", required=True
    )
    agent = explain.add_parser("agent", help="per site of the agent's account: pushed or not, and why")
    agent.add_argument("agent_id", metavar="AGENT_ID")
    agent.add_argument("--site", dest="site_id", metavar="SITE_ID", help="only this site (of any account)")
    agent.add_argument("--json", action="store_true", help="a JSON document instead of the table")
    test_push = commands.add_parser(
        "test-push", help="push a test alert to an agent's phones, print the outcome"
    )
    test_push.add_argument("agent_id", metavar="AGENT_ID")
    test_push.add_argument("--device", dest="device_id", metavar="DEVICE_ID", help="only this device")
    test_push.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the worker's answer (default 60)"
    )
    test_push.add_argument("--json", action="store_true", help="the answer's data as JSON instead of a table")
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
            report = asyncio.run(_ensure_topics(settings, args.partitions, args.replication_factor))
            for warning in report.warnings:
                print(f"livechat-notifier: warning: {warning}", file=sys.stderr)  # noqa: T201
            log.info(
                "topics_ensured",
                created=report.created,
                replication_factor=report.replication_factor,
                chat_events_timestamp_type=report.chat_events_timestamp_type,
                warnings=len(report.warnings),
            )
            return 0
        if args.command == "explain":
            return asyncio.run(_explain_agent(settings, args.agent_id, args.site_id, as_json=args.json))
        if args.command == "test-push":
            return asyncio.run(
                _test_push(settings, args.agent_id, args.device_id, args.timeout, as_json=args.json)
            )
        from service.kafka.connection import check_kafka_credentials  # noqa: PLC0415
        from service.push.senders import check_credentials  # noqa: PLC0415

        check_kafka_credentials(settings)
        check_credentials(settings)
        log.info("config_ok", settings=settings.redacted())
    except NotifierError as error:
        print(f"livechat-notifier: {error}", file=sys.stderr)  # noqa: T201 -- the CLI's error channel
        return 2
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


async def _ensure_topics(
    settings: Settings, partitions: int | None, replication_factor: int | None
) -> EnsureReport:
    """`topics ensure`, after the same fail-fast connection check as `run`."""
    from service.kafka.connection import check_connection  # noqa: PLC0415
    from service.kafka.topics import ensure_topics  # noqa: PLC0415

    await check_connection(settings)
    return await ensure_topics(settings, partitions, replication_factor)


async def _explain_agent(settings: Settings, agent_id: str, site_id: str | None, *, as_json: bool) -> int:
    """`explain agent`: read the directory topics as the worker does, print the verdicts.
    Exit 0 when the agent is known, 1 when it is not."""
    from service.config_builders import decode_limits  # noqa: PLC0415
    from service.domain.eligibility import explain_agent  # noqa: PLC0415
    from service.kafka.connection import check_connection  # noqa: PLC0415
    from service.kafka.directory_snapshot import read_agent_view  # noqa: PLC0415
    from service.wire.explain_output import explanation_json, explanation_table  # noqa: PLC0415

    await check_connection(settings)
    read = await read_agent_view(settings, agent_id, decode_limits(settings))
    explanation = explain_agent(
        agent_id,
        read.agent,
        read.sites,
        snapshot_at_ms=read.agent_timestamp_ms,
        rejections=read.rejections,
        only_site_id=site_id,
    )
    render = explanation_json if as_json else explanation_table
    print(render(explanation, read.agent_timestamp_ms))  # noqa: T201 -- the command's output
    if read.skipped:
        print(  # noqa: T201
            f"livechat-notifier: warning: {read.skipped} unusable snapshot(s) skipped, as by the worker",
            file=sys.stderr,
        )
    return 0 if explanation.agent_known else 1


async def _test_push(
    settings: Settings, agent_id: str, device_id: str | None, timeout_s: float, *, as_json: bool
) -> int:
    """`test-push`: exit 0 when every tested device got it (delivered), 1 when the worker answered
    otherwise (a device not delivered, or none tested), 3 when no answer came in time."""
    from service.kafka.connection import check_connection  # noqa: PLC0415
    from service.kafka.test_push_request import request_test_push  # noqa: PLC0415
    from service.wire.commands import TestOutcome, render_test_result  # noqa: PLC0415

    await check_connection(settings)
    request_id, devices = await request_test_push(settings, agent_id, device_id, timeout_s)
    if devices is None:
        print(  # noqa: T201 -- the CLI's error channel
            f"livechat-notifier: no answer to test {request_id} within {timeout_s:g} s: is a worker running, "
            f"and reading {settings.topic_commands!r} (consumer group {settings.group_id}-commands)?",
            file=sys.stderr,
        )
        return 3
    print(render_test_result(agent_id, request_id, devices, as_json=as_json))  # noqa: T201 -- the output
    delivered = bool(devices) and all(device.outcome is TestOutcome.DELIVERED for device in devices)
    return 0 if delivered else 1


if __name__ == "__main__":
    sys.exit(main())
