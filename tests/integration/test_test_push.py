"""Issue #12, the test push command end to end on the real broker and the provider fakes: a
`livechat.push.test_requested` on the commands topic makes the worker push a test alert to the
agent's phones and answer `livechat.push.test_result` on the push-feedback topic."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from devtools import traffic
from devtools.fakes.apns import ApnsFault
from devtools.kafka_io import Output
from service.app import Application
from service.clock import SystemClock
from service.push.senders import build_senders
from service.wire.commands import TEST_REQUESTED, TEST_RESULT
from service.wire.outbound import TOKEN_REJECTED
from tests.integration.conftest import MakeStack
from tests.integration.kafka_helpers import eventually, run_cli
from tests.integration.stack import Stack

pytestmark = [pytest.mark.kafka]

APNS_TOKEN = "d7" * 32
IPHONE = traffic.device("iphone", "apns", APNS_TOKEN)
ANDROID = traffic.device("android", "fcm", "fcm-token-test")
NO_APNS = {"apns_key_file": None, "apns_key_id": None, "apns_team_id": None, "apns_topic": None}


def command(agent_id: str, device_id: str | None = None, command_id: str | None = None) -> tuple[str, bytes]:
    command_id = command_id or str(uuid.uuid4())
    data = {"agent_id": agent_id} | ({"device_id": device_id} if device_id else {})
    value = {"specversion": "1.0", "id": command_id, "source": "urn:support-console", "type": TEST_REQUESTED}
    return command_id, json.dumps(value | {"data": data}).encode()


async def ask(
    stack: Stack, agent_id: str, device_id: str | None = None, command_id: str | None = None
) -> str:
    command_id, value = command(agent_id, device_id, command_id)
    await stack.publisher.send(stack.settings.topic_commands, agent_id, value)
    return command_id


def results(stack: Stack, command_id: str | None = None) -> list[dict[str, Any]]:
    return [
        o.value["data"]
        for o in stack.feedback()
        if o.value
        and o.value.get("type") == TEST_RESULT
        and (command_id is None or o.value["data"]["request_id"] == command_id)
    ]


async def answer(stack: Stack, command_id: str, timeout: float = 30.0) -> dict[str, Any]:
    await stack.outputs.wait_for(lambda: bool(results(stack, command_id)), timeout, f"answer to {command_id}")
    (found,) = results(stack, command_id)
    return found


def outcomes(result: dict[str, Any]) -> dict[str, tuple[str, str, str | None]]:
    return {d["device_id"]: (d["provider"], d["outcome"], d.get("reason")) for d in result["devices"]}


def counted(app: Application, outcome: str) -> float:
    value = app.metrics.registry.get_sample_value("notifier_test_pushes_total", {"outcome": outcome})
    assert value is not None
    return value


async def test_both_phones_get_a_test_alert_whatever_availability_says(stack: Stack) -> None:
    await stack.agent("agent-1", available=False, sites={}, devices=[IPHONE, ANDROID])
    app = await stack.start_worker()

    command_id = await ask(stack, "agent-1")
    result = await answer(stack, command_id)

    assert result["agent_id"] == "agent-1"
    assert outcomes(result) == {"iphone": ("apns", "delivered", None), "android": ("fcm", "delivered", None)}
    (ios,) = stack.apns_to(stack.fakes.apns, APNS_TOKEN, "test_alert")
    (android,) = stack.fcm_to("fcm-token-test", "test_alert")
    assert ios.payload["request_id"] == android.message["data"]["request_id"] == command_id
    assert ios.headers["apns-push-type"] == "alert"
    assert ios.payload["aps"]["alert"]
    assert android.message["android"]["notification"]["channel_id"] == "live_chat_requests"
    assert counted(app, "delivered") == 2


async def test_one_device_only_and_unknown_agent_or_device_answered_without_devices(stack: Stack) -> None:
    await stack.agent("agent-1", devices=[IPHONE, ANDROID])
    await stack.start_worker()

    one = await answer(stack, await ask(stack, "agent-1", "android"))
    unknown_agent = await answer(stack, await ask(stack, "agent-404"))
    unknown_device = await answer(stack, await ask(stack, "agent-1", "tablet"))

    assert outcomes(one) == {"android": ("fcm", "delivered", None)}
    assert stack.apns_to(stack.fakes.apns, APNS_TOKEN) == []
    assert unknown_agent == {
        "agent_id": "agent-404",
        "request_id": unknown_agent["request_id"],
        "devices": [],
    }
    assert unknown_device["devices"] == []


async def test_a_rejected_token_is_answered_with_the_reason_and_reported_dead(stack: Stack) -> None:
    stack.fakes.apns.set_fault(APNS_TOKEN, ApnsFault(status=410, reason="Unregistered"))
    await stack.agent("agent-1", devices=[IPHONE, ANDROID])
    app = await stack.start_worker()

    first = await answer(stack, await ask(stack, "agent-1"))
    assert outcomes(first) == {
        "iphone": ("apns", "token_rejected", "Unregistered"),
        "android": ("fcm", "delivered", None),
    }
    rejected = [
        o.value["data"] for o in stack.feedback() if o.value and o.value.get("type") == TOKEN_REJECTED
    ]
    assert [(r["agent_id"], r["device_id"], r["reason"]) for r in rejected] == [
        ("agent-1", "iphone", "Unregistered")
    ]
    assert counted(app, "token_rejected") == 1

    # Like after a real alert's rejection, the dead token is not pushed again: the next test says so.
    attempts = len(stack.fakes.apns.requests.items)
    again = await answer(stack, await ask(stack, "agent-1", "iphone"))
    assert outcomes(again) == {"iphone": ("apns", "token_rejected", None)}
    assert len(stack.fakes.apns.requests.items) == attempts


async def test_a_provider_without_credentials_is_not_configured(make_stack: MakeStack) -> None:
    stack = await make_stack(**NO_APNS)
    await stack.agent("agent-1", devices=[IPHONE, ANDROID])
    app = await stack.start_worker()

    result = await answer(stack, await ask(stack, "agent-1"))

    assert outcomes(result) == {
        "iphone": ("apns", "not_configured", None),
        "android": ("fcm", "delivered", None),
    }
    assert counted(app, "not_configured") == 1


async def test_bad_commands_are_dead_lettered_and_the_next_one_is_answered(stack: Stack) -> None:
    await stack.agent("agent-1", devices=[ANDROID])
    app = await stack.start_worker()
    topic = stack.settings.topic_commands

    await stack.publisher.send(topic, "agent-1", b"{not json")
    await stack.publisher.send(topic, "agent-1", command("")[1])  # agent_id empty
    await stack.publisher.send(topic, "agent-2", command("agent-1")[1])  # key is not the agent
    result = await answer(stack, await ask(stack, "agent-1"))

    assert outcomes(result) == {"android": ("fcm", "delivered", None)}
    letters: list[Output] = stack.dead_letters()
    assert [(d.headers["reason"], d.headers["source_topic"]) for d in letters] == [
        (b"invalid_json", topic.encode()),
        (b"bad_data", topic.encode()),
        (b"key_mismatch", topic.encode()),
    ]
    assert letters[0].raw == b"{not json"
    rejected = app.metrics.registry.get_sample_value(
        "notifier_events_rejected_total", {"topic": topic, "reason": "invalid_json"}
    )
    assert rejected == 1


async def test_a_replayed_command_id_is_neither_pushed_nor_answered_again(stack: Stack) -> None:
    await stack.agent("agent-1", devices=[ANDROID])
    doubled = await ask(stack, "agent-1")
    await ask(stack, "agent-1", command_id=doubled)  # a producer's retry: both read in the first batch
    await stack.start_worker()
    await answer(stack, doubled)
    await ask(stack, "agent-1", command_id=doubled)  # replayed later, in a batch of its own
    later = await answer(stack, await ask(stack, "agent-1"))  # same partition: read after the replay

    assert len(results(stack, doubled)) == 1
    assert outcomes(later) == {"android": ("fcm", "delivered", None)}
    assert len(stack.fcm_to("fcm-token-test", "test_alert")) == 2


async def test_a_command_read_too_late_is_not_answered(stack: Stack) -> None:
    """A command read after its test alert would have expired (an outage, a lag): nobody waits for
    it any more, and a test alert then would buzz the phone out of the blue."""
    await stack.agent("agent-1", devices=[ANDROID])
    await stack.start_worker()
    old_id, old = command("agent-1")
    ten_minutes_ago = int(time.time() * 1000) - 600_000
    await stack.publisher.send(stack.settings.topic_commands, "agent-1", old, timestamp_ms=ten_minutes_ago)
    fresh = await answer(stack, await ask(stack, "agent-1"))  # same partition: read after the old one

    assert outcomes(fresh) == {"android": ("fcm", "delivered", None)}
    assert results(stack, old_id) == []
    assert len(stack.fcm_to("fcm-token-test", "test_alert")) == 1


async def test_two_workers_answer_each_command_once(make_stack: MakeStack) -> None:
    """The workers share the commands group: each command is answered by one of them, not both."""
    stack = await make_stack(partitions=2)
    agents = [f"agent-{n}" for n in range(8)]
    for agent_id in agents:
        await stack.agent(agent_id, devices=[traffic.device("phone", "fcm", f"fcm-{agent_id}")])
    await stack.start_worker()
    clock = SystemClock()
    second = Application(stack.settings, await build_senders(stack.settings, clock), clock)
    second_run = asyncio.create_task(second.run(handle_signals=False))
    try:
        await eventually(second.ready, 60, "second worker ready")
        asked = [await ask(stack, agent_id) for agent_id in agents]
        for command_id in asked:
            await answer(stack, command_id)
        # Each partition's next command is answered after any second answer to its earlier ones.
        for agent_id in agents:
            await answer(stack, await ask(stack, agent_id))
        assert all(len(results(stack, command_id)) == 1 for command_id in asked)
        assert all(len(stack.fcm_to(f"fcm-{agent_id}", "test_alert")) == 2 for agent_id in agents)
    finally:
        second.request_stop()
        assert await second_run == 0


async def test_support_sends_a_test_push_from_the_command_line(stack: Stack) -> None:
    stack.fakes.apns.set_fault(APNS_TOKEN, ApnsFault(status=410, reason="Unregistered"))
    await stack.agent("agent-1", devices=[IPHONE, ANDROID])
    await stack.start_worker()

    table = await asyncio.to_thread(run_cli, stack.settings, "test-push", "agent-1")
    only_android = await asyncio.to_thread(
        run_cli, stack.settings, "test-push", "agent-1", "--device", "android", "--json"
    )
    unknown = await asyncio.to_thread(run_cli, stack.settings, "test-push", "agent-404")

    assert table.returncode == 1, table.stderr  # one phone did not get it
    rows = [line.split() for line in table.stdout.splitlines()[2:]]
    assert rows == [
        ["iphone", "apns", "token_rejected", "Unregistered"],
        ["android", "fcm", "delivered", "-"],
    ]
    assert only_android.returncode == 0, only_android.stderr
    answer = json.loads(only_android.stdout)
    assert answer["devices"] == [{"device_id": "android", "provider": "fcm", "outcome": "delivered"}]
    assert answer["request_id"] in {result["request_id"] for result in results(stack)}
    assert unknown.returncode == 1
    assert "no device tested" in unknown.stdout


async def test_the_command_line_says_so_when_no_worker_answers(stack: Stack) -> None:
    done = await asyncio.to_thread(run_cli, stack.settings, "test-push", "agent-1", "--timeout", "2")
    assert done.returncode == 3
    assert "no answer" in done.stderr


async def test_a_rebalance_waits_for_the_batch_in_hand_so_nothing_is_answered_twice(
    make_stack: MakeStack,
) -> None:
    """A second worker joins while the first is still pushing a batch (the provider is slow): the
    first finishes and commits before its partitions move, so the second does not answer them again."""
    stack = await make_stack(partitions=4, push_timeout_seconds=20.0)
    partitioner, partitions = DefaultPartitioner(), [0, 1, 2, 3]
    by_partition: dict[int, str] = {}
    for n in range(100):  # one agent per commands partition: whichever moves holds a command
        by_partition.setdefault(partitioner(f"agent-{n}".encode(), partitions, partitions), f"agent-{n}")
    agents = sorted(by_partition.values())
    tokens = {agent_id: f"{n + 1:02x}" * 32 for n, agent_id in enumerate(agents)}
    for agent_id, token in tokens.items():
        await stack.agent(agent_id, devices=[traffic.device("iphone", "apns", token)])
        stack.fakes.apns.set_fault(token, ApnsFault(delay_s=8.0))  # answers, but only after 8 s
    await stack.start_worker()
    first = [await ask(stack, agent_id) for agent_id in agents]
    await stack.fakes.apns.requests.wait_for(lambda items: len(items) >= len(agents), 30)

    clock = SystemClock()
    second = Application(stack.settings, await build_senders(stack.settings, clock), clock)
    second_run = asyncio.create_task(second.run(handle_signals=False))
    try:
        await eventually(second.ready, 60, "second worker ready")
        for command_id in first:
            await answer(stack, command_id, timeout=60)
        stack.fakes.apns.clear_faults()
        # Each partition's next command is answered after any second answer to its first one.
        for agent_id in agents:
            await answer(stack, await ask(stack, agent_id), timeout=60)
        assert [len(results(stack, command_id)) for command_id in first] == [1] * len(agents)
        assert all(
            len(stack.apns_to(stack.fakes.apns, token, "test_alert")) == 2 for token in tokens.values()
        )
    finally:
        second.request_stop()
        assert await second_run == 0
