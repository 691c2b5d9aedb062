"""Issue #3: every round ends exactly once whatever happens to the worker — with real processes,
real signals and the real broker. Each test names the property it guards."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from devtools.changelog_fill import fill_changelog
from devtools.chaos.run import Chaos, ChaosConfig
from devtools.fakes.fcm import FcmFault
from devtools.kafka_broker import KafkaBroker
from devtools.kafka_io import OutputReader
from service.domain.rounds import PendingRound
from service.state.changelog import decode_state
from tests.fault.conftest import Rig, make_rig

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def sleep_until(epoch_ms: int) -> None:
    """Part of a scenario (the worker is down *while* a deadline passes), not synchronisation."""
    await asyncio.sleep(max(0.0, epoch_ms / 1000 - time.time()))


async def metrics_of(rig: Rig, name: str) -> str:
    worker = rig.fleet.workers[name]
    async with ClientSession() as http, http.get(f"http://127.0.0.1:{worker.http_port}/metrics") as response:
        return await response.text()


async def delivery_recorded(rig: Rig, chat_id: str) -> None:
    """Wait until the worker committed the devices its fan-out reached (in the changelog)."""
    reader = OutputReader(rig.settings.kafka_bootstrap_servers, [rig.settings.topic_changelog])
    await reader.start()

    def recorded() -> bool:
        for output in reader.on(rig.settings.topic_changelog, chat_id):
            raw = output.value.get("_raw") if output.value else None
            state = decode_state(raw) if isinstance(raw, bytes) else None
            if isinstance(state, PendingRound) and state.delivered:
                return True
        return False

    try:
        await reader.wait_for(recorded, 30, "the delivery recorded in the changelog")
    finally:
        await reader.stop()


async def test_chaos_short_run_has_no_missing_duplicated_or_false_outcome(tmp_path: Path) -> None:
    """Properties 1, 2, 3, 6 together: SIGKILLs, a SIGTERM, a SIGSTOP zombie, scale 1->3->1 and a
    broker kill while seeded traffic flows; the checker compares every round's outcome."""
    config = ChaosConfig(
        seed=7, rounds=200, rate_per_s=8, kills=3, graceful_restarts=1, pauses=1, broker_restarts=1
    )
    report = await Chaos(config, tmp_path).run()
    print(report)
    assert report.expected_missed > 40
    assert report.kills == 3
    assert report.broker_restarts == 1
    assert (report.missing, report.duplicated, report.false_missed) == (0, 0, 0)
    assert report.problems == []


async def test_sigkill_mid_round_restores_and_ends_in_exactly_one_missed(rig: Rig) -> None:
    """Property 1: a kill -9 loses no pending deadline and duplicates no outcome."""
    await rig.fleet.start("w0")
    await rig.fleet.wait_ready("w0")
    await rig.request("chat-1", tta=6, at_ms=now_ms())
    await rig.fcm.messages.wait_for(lambda items: len(items) >= 1, 30)
    await delivery_recorded(rig, "chat-1")
    await rig.fleet.kill("w0")
    await rig.fleet.start("w0")
    await rig.outputs.wait_for(lambda: rig.missed("chat-1") >= 1 and rig.chatbot("chat-1") >= 1, 60, "Missed")
    await rig.request("sentinel", tta=1, at_ms=now_ms())
    await rig.outputs.wait_for(lambda: rig.missed("sentinel") >= 1, 60, "sentinel Missed")
    assert (rig.missed("chat-1"), rig.chatbot("chat-1")) == (1, 1)
    chat_pushes = [m for m in rig.fcm.messages.items if m.message["data"].get("chat_id") == "chat-1"]
    assert [m.message["data"]["type"] for m in chat_pushes] == ["handoff_requested", "handoff_closed"], (
        "a fan-out that finished before the kill must not be repeated"
    )


async def test_paused_zombie_is_fenced_and_cannot_commit(rig: Rig) -> None:
    """Property 2: a SIGSTOP'd worker whose partitions moved must not commit outputs for them."""
    await rig.fleet.start("zombie")
    await rig.fleet.wait_ready("zombie")
    deadline_at = now_ms() + 14_000
    for index in range(5):
        await rig.request(f"chat-{index}", tta=14, at_ms=deadline_at - 14_000)
    await rig.fcm.messages.wait_for(lambda items: len(items) >= 5, 30)
    rig.fleet.pause("zombie")
    await rig.fleet.start("successor")
    await rig.fleet.wait_ready("successor", timeout=60)
    await rig.outputs.wait_for(
        lambda: all(rig.missed(f"chat-{i}") for i in range(5)), 60, "Missed from the successor"
    )
    rig.fleet.resume("zombie")  # it still holds the rounds in memory and will try to fire them
    zombie_log = rig.fleet.workers["zombie"].log_path

    def fenced() -> bool:
        return "producer_fenced" in zombie_log.read_text() or "partition_released" in zombie_log.read_text()

    deadline = time.monotonic() + 90
    while not fenced():
        assert time.monotonic() < deadline, "the zombie neither got fenced nor gave its partition up"
        await asyncio.sleep(0.2)
    await rig.request("sentinel", tta=1, at_ms=now_ms())
    await rig.outputs.wait_for(lambda: rig.missed("sentinel") >= 1, 60, "sentinel Missed")
    assert [rig.missed(f"chat-{i}") for i in range(5)] == [1] * 5
    assert [rig.chatbot(f"chat-{i}") for i in range(5)] == [1] * 5


async def test_backlog_does_not_fire_a_deadline_before_the_join_that_beat_it(
    kafka: Any, tmp_path: Path
) -> None:
    """Property 4: a worker catching up reads a join that beat the deadline before firing it;
    deadlines that really passed while it was down fire late, never lost, counted as expired on
    arrival (the worker read the request after its deadline: nobody could be pushed) rather than
    as timer lateness, which a replay of days-old requests would otherwise swamp."""
    # One record per poll, so the join sits in the backlog while the deadline is already past.
    made, fcm = await make_rig(kafka.bootstrap_servers, tmp_path, kafka_max_batch_records=1)
    try:
        requested = now_ms()
        await made.request("joined", tta=2, at_ms=requested)
        await made.request("expired", tta=2, at_ms=requested + 1)
        await made.join("joined", at_ms=requested + 1_000)
        await sleep_until(requested + 4_000)  # the worker is down while both deadlines pass
        await made.fleet.start("w0")
        await made.fleet.wait_ready("w0")
        await made.outputs.wait_for(lambda: made.missed("expired") >= 1, 60, "the expired round's Missed")
        await made.request("sentinel", tta=1, at_ms=now_ms())
        await made.outputs.wait_for(lambda: made.missed("sentinel") >= 1, 60, "sentinel Missed")
        assert made.missed("joined") == 0, (
            "false Missed: the deadline fired before the backlog's join was read"
        )
        assert made.missed("expired") == 1
        metrics = await metrics_of(made, "w0")
        expired = re.search(r'notifier_rounds_missed_total\{when="expired_on_arrival"\} (\S+)', metrics)
        assert expired is not None
        assert float(expired.group(1)) == 1, "the Missed reported late is not counted as expired on arrival"
    finally:
        await made.fleet.stop_all()
        await made.outputs.stop()
        await made.publisher.stop()
        await fcm.stop()


async def test_interrupted_fan_out_is_pushed_again_only_while_in_time(rig: Rig) -> None:
    """Property 5: a crash mid-fan-out re-pushes after restore if the deadline is ahead; a round
    whose deadline passed while the worker was down is not pushed at all."""
    rig.fcm.set_fault("fcm-token-1", FcmFault(hang=True))
    await rig.fleet.start("w0")
    await rig.fleet.wait_ready("w0")
    started = now_ms()
    await rig.request("in-time", tta=40, at_ms=started)
    await rig.request("too-late", tta=3, at_ms=started)
    await rig.fcm.arrivals.wait_for(lambda items: len(items) >= 2, 30)  # both pushes hang in flight
    await rig.fleet.kill("w0")
    await sleep_until(started + 4_000)  # "too-late" expires while the worker is down
    rig.fcm.clear_faults()
    await rig.fleet.start("w0")
    await rig.outputs.wait_for(lambda: rig.missed("too-late") >= 1, 60, "Missed of the expired round")
    await rig.fcm.messages.wait_for(
        lambda items: any(m.message["data"].get("chat_id") == "in-time" for m in items), 30
    )
    delivered_alerts = [
        m.message["data"]["chat_id"]
        for m in rig.fcm.messages.items
        if m.message["data"]["type"] == "handoff_requested"
    ]
    assert delivered_alerts == ["in-time"]


async def test_sigterm_exits_zero_within_the_grace_period_and_loses_nothing(rig: Rig) -> None:
    """Property 6: graceful shutdown commits, leaves the group and exits 0 within the grace."""
    await rig.fleet.start("w0")
    await rig.fleet.wait_ready("w0")
    await rig.request("chat-1", tta=5, at_ms=now_ms())
    await rig.fcm.messages.wait_for(lambda items: len(items) >= 1, 30)
    began = time.monotonic()
    code = await rig.fleet.terminate("w0", timeout=float(rig.settings.shutdown_grace_seconds) + 5)
    took = time.monotonic() - began
    assert code == 0
    assert took < rig.settings.shutdown_grace_seconds + 2
    await rig.fleet.start("w0")
    await rig.outputs.wait_for(lambda: rig.missed("chat-1") >= 1, 60, "Missed after the restart")
    await rig.request("sentinel", tta=1, at_ms=now_ms())
    await rig.outputs.wait_for(lambda: rig.missed("sentinel") >= 1, 60, "sentinel Missed")
    assert (rig.missed("chat-1"), rig.chatbot("chat-1")) == (1, 1)


async def test_broker_restart_makes_the_worker_unready_then_it_recovers_by_itself(tmp_path: Path) -> None:
    """Property 3: broker killed and restarted; /readyz says not-ready meanwhile; exactly once."""
    broker = KafkaBroker(tmp_path / "kafka")
    await asyncio.to_thread(broker.start)
    made, fcm = await make_rig(broker.bootstrap_servers, tmp_path)
    try:
        await made.fleet.start("w0")
        await made.fleet.wait_ready("w0")
        await made.request("chat-1", tta=8, at_ms=now_ms())
        await made.fcm.messages.wait_for(lambda items: len(items) >= 1, 30)
        await asyncio.to_thread(broker.kill)
        deadline = time.monotonic() + 30
        while await made.fleet.ready("w0"):
            assert time.monotonic() < deadline, "/readyz stayed ready with the broker down"
            await asyncio.sleep(0.2)
        await asyncio.to_thread(broker.restart)
        await made.fleet.wait_ready("w0", timeout=90)
        assert made.fleet.workers["w0"].process.returncode is None, "the worker must reconnect, not exit"
        await made.outputs.wait_for(lambda: made.missed("chat-1") >= 1, 90, "Missed after the broker restart")
        await made.request("sentinel", tta=1, at_ms=now_ms())
        await made.outputs.wait_for(lambda: made.missed("sentinel") >= 1, 60, "sentinel Missed")
        assert (made.missed("chat-1"), made.chatbot("chat-1")) == (1, 1)
    finally:
        await made.fleet.stop_all()
        await made.outputs.stop()
        await made.publisher.stop()
        await fcm.stop()
        await asyncio.to_thread(broker.stop)


async def test_readyz_stays_false_until_a_large_restore_completes(rig: Rig) -> None:
    """Property 7: restore is bounded and /readyz is false until it is done."""
    rounds = 200_000
    now = now_ms()
    await fill_changelog(
        rig.settings.kafka_bootstrap_servers, rig.settings.topic_changelog, 0, rounds, now, now + 3_600_000
    )
    worker = await rig.fleet.start("w0")
    statuses: list[tuple[float, int]] = []
    async with ClientSession() as http:
        give_up = time.monotonic() + 120
        while not statuses or statuses[-1][1] != 200:
            assert time.monotonic() < give_up, "never ready"
            try:
                async with http.get(f"http://127.0.0.1:{worker.http_port}/readyz") as response:
                    statuses.append((time.time(), response.status))
            except OSError:
                pass  # the HTTP server is not up yet
            await asyncio.sleep(0.02)
    restored = [
        json.loads(line)
        for line in worker.log_path.read_text().splitlines()
        if '"partition_restored"' in line
    ]
    assert [entry["pending_rounds"] for entry in restored] == [rounds]
    restored_at = datetime.fromisoformat(restored[0]["timestamp"]).timestamp()
    first_ready = next(at for at, status in statuses if status == 200)
    assert any(status == 503 for _, status in statuses), "readiness was never observed false"
    assert first_ready >= restored_at, "ready before the restore finished"
    print(f"restored {rounds} rounds in {restored[0]['seconds']} s")
