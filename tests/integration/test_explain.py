"""`livechat-notifier explain agent` on the real broker, run as an SRE runs it: a subprocess
configured by the same NOTIFIER_* variables as `run`, reading what other services published."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from devtools.kafka_broker import KafkaBroker
from devtools.kafka_io import Publisher
from devtools.traffic import agent_updated, cloud_event, device, rfc3339, site_updated
from service.settings import Settings
from tests.integration.kafka_helpers import fresh_settings, run_cli

pytestmark = [pytest.mark.kafka]


def _token_rejected(agent_id: str, device_id: str, provider: str, reason: str, at_ms: int) -> bytes:
    """As the worker writes it (service/wire/outbound.py)."""
    data = {
        "agent_id": agent_id,
        "device_id": device_id,
        "provider": provider,
        "reason": reason,
        "rejected_at": rfc3339(at_ms),
    }
    return cloud_event(
        "livechat.push.token_rejected", data, f"token_rejected:{agent_id}:{device_id}:0a1b2c3d"
    )


async def _explain(settings: Settings, *args: str) -> tuple[int, Any]:
    result = await asyncio.to_thread(run_cli, settings, "explain", "agent", *args, "--json")
    assert result.returncode in {0, 1}, result.stderr
    assert result.stdout, (result.returncode, result.stderr)
    assert "tok-" not in result.stdout + result.stderr, "a device token was printed"
    return result.returncode, json.loads(result.stdout)


async def test_explain_reports_each_site_with_reasons_and_only_rejections_newer_than_the_snapshot(
    kafka: KafkaBroker,
) -> None:
    settings = await fresh_settings(kafka.bootstrap_servers)
    now = int(time.time() * 1000)
    devices = [device("iphone", "apns", "tok-iphone", "sandbox"), device("pixel", "fcm", "tok-pixel")]
    toggles = {"site-a": True, "site-b": False}
    publisher = Publisher(kafka.bootstrap_servers)
    await publisher.start()
    try:
        await publisher.send(settings.topic_sites, "site-a", site_updated("site-a", "acct-1", "Alpine Tours"))
        await publisher.send(settings.topic_sites, "site-b", site_updated("site-b", "acct-1", "Bergbahn"))
        await publisher.send(settings.topic_sites, "site-x", site_updated("site-x", "acct-2", "Elsewhere"))
        first = agent_updated("agent-1", "acct-1", sites=toggles, devices=devices)
        await publisher.send(settings.topic_agents, "agent-1", first, timestamp_ms=now - 100_000)
        # Rejected after the first snapshot, but the app re-registered since: the worker forgot it.
        stale = _token_rejected("agent-1", "pixel", "fcm", "UNREGISTERED", now - 50_000)
        await publisher.send(settings.topic_push_feedback, "agent-1", stale)
        latest = agent_updated("agent-1", "acct-1", sites=toggles, devices=devices)
        await publisher.send(settings.topic_agents, "agent-1", latest, timestamp_ms=now - 10_000)
        fresh = _token_rejected("agent-1", "iphone", "apns", "Unregistered", now - 5_000)
        await publisher.send(settings.topic_push_feedback, "agent-1", fresh)
        other = _token_rejected("agent-2", "pixel", "fcm", "UNREGISTERED", now - 1_000)
        await publisher.send(settings.topic_push_feedback, "agent-2", other)
    finally:
        await publisher.stop()

    code, report = await _explain(settings, "agent-1")
    assert code == 0
    assert report["agent_known"] is True
    assert report["account_id"] == "acct-1"
    assert report["snapshot_at"] == rfc3339(now - 10_000)
    by_site = {site["site_id"]: site for site in report["sites"]}
    assert sorted(by_site) == ["site-a", "site-b"], "only the agent's account's sites"
    alpine = by_site["site-a"]
    assert (alpine["name"], alpine["pushed"], alpine["reasons"]) == ("Alpine Tours", True, [])
    iphone, pixel = alpine["devices"]
    assert iphone == {
        "device_id": "iphone",
        "provider": "apns",
        "apns_environment": "sandbox",
        "pushed": False,
        "rejection": {
            "device_id": "iphone",
            "provider": "apns",
            "reason": "Unregistered",
            "rejected_at": rfc3339(now - 5_000),
        },
    }
    assert (pixel["device_id"], pixel["pushed"], pixel["rejection"]) == ("pixel", True, None)
    assert (by_site["site-b"]["pushed"], by_site["site-b"]["reasons"]) == (False, ["toggle_off"])
    assert [(r["device_id"], r["rejected_at"]) for r in report["ignored_rejections"]] == [
        ("pixel", rfc3339(now - 50_000))
    ]

    code, report = await _explain(settings, "agent-1", "--site", "site-x")
    assert code == 0
    (foreign,) = report["sites"]
    assert (foreign["site_id"], foreign["reasons"]) == ("site-x", ["other_account", "toggle_absent"])

    code, report = await _explain(settings, "nobody")
    assert code == 1
    assert (report["agent_known"], report["sites"]) == (False, [])


async def test_the_table_names_verdicts_and_reasons_and_an_unknown_agent_exits_1(kafka: KafkaBroker) -> None:
    settings = await fresh_settings(kafka.bootstrap_servers)
    publisher = Publisher(kafka.bootstrap_servers)
    await publisher.start()
    try:
        await publisher.send(settings.topic_sites, "site-a", site_updated("site-a", "acct-1", "Alpine Tours"))
        snapshot = agent_updated("agent-1", "acct-1", available=False, sites={"site-a": True}, devices=[])
        await publisher.send(settings.topic_agents, "agent-1", snapshot)
    finally:
        await publisher.stop()

    result = await asyncio.to_thread(run_cli, settings, "explain", "agent", "agent-1")
    assert result.returncode == 0, result.stderr
    header, table_head, row = result.stdout.splitlines()
    assert header.startswith("agent agent-1 (account acct-1, snapshot of ")
    assert header.endswith("pushed for 0 of 1 site(s)")
    assert table_head.split() == ["SITE", "NAME", "VERDICT", "REASONS", "DEVICES"]
    assert row.split() == [
        "site-a",
        "Alpine",
        "Tours",
        "NOT",
        "pushed",
        "availability_off,",
        "no_devices",
        "-",
    ]

    unknown = await asyncio.to_thread(run_cli, settings, "explain", "agent", "nobody")
    assert unknown.returncode == 1
    assert "agent nobody: unknown" in unknown.stdout


def test_an_unreachable_cluster_is_exit_2_with_the_reason(kafka: KafkaBroker) -> None:
    del kafka
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1")
    result = run_cli(settings, "explain", "agent", "agent-1")
    assert result.returncode == 2
    assert result.stderr.startswith("livechat-notifier: cannot connect to Kafka (PLAINTEXT): 127.0.0.1:1:")
