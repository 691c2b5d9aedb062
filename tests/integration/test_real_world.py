"""Issue #10 on the real broker: producers' clocks lie, services race, old data is replayed and
the sites feed lags — the visitor is never left hanging and no phone buzzes for a dead chat.

Each test failed on the code before #10 (noted per test) and states the rule it holds."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from devtools import traffic
from devtools.fakes.fcm import ReceivedMessage
from tests.integration.kafka_helpers import eventually
from tests.integration.stack import Stack, now_ms

pytestmark = [pytest.mark.kafka]

TOKEN = "fcm-token-real-world"
ANDROID = traffic.device("android", "fcm", TOKEN)


async def world(stack: Stack, *, available: bool = True, site_id: str = "site-1") -> None:
    await stack.site("site-1", "acct-1", time_to_accept_seconds=60)
    await stack.agent("agent-1", available=available, sites={site_id: True}, devices=[ANDROID])


def alerts_for(stack: Stack, chat_id: str) -> list[ReceivedMessage]:
    return [m for m in stack.fcm_to(TOKEN, "handoff_requested") if m.message["data"]["chat_id"] == chat_id]


def closing_for(stack: Stack, chat_id: str) -> list[ReceivedMessage]:
    return [m for m in stack.fcm_to(TOKEN, "handoff_closed") if m.message["data"]["chat_id"] == chat_id]


def metric(stack: Stack, name: str, **labels: str) -> float:
    assert stack.app is not None
    return stack.app.metrics.registry.get_sample_value(name, labels) or 0.0


# -- 1. clocks ------------------------------------------------------------------------------------


async def test_a_join_stamped_after_the_deadline_by_a_fast_clock_but_sent_in_time_accepts_the_chat(
    stack: Stack,
) -> None:
    """Before #10: the join's claimed time was past the deadline, so the chat was reported Missed
    and the visitor told nobody could come while talking to an agent."""
    await world(stack)
    await stack.start_worker()
    await stack.request("chat-fast-join", tta=3)
    await stack.fakes.fcm.messages.wait_for(lambda _: bool(alerts_for(stack, "chat-fast-join")), 20)
    await stack.join("chat-fast-join", at_ms=now_ms() + 120_000)  # the chat backend's clock: +2 min

    await stack.fakes.fcm.messages.wait_for(lambda _: bool(closing_for(stack, "chat-fast-join")), 20)
    assert closing_for(stack, "chat-fast-join")[0].message["data"]["outcome"] == "accepted"
    await stack.settle(tta=4)
    assert stack.missed("chat-fast-join") == [] and stack.chatbot("chat-fast-join") == []


async def _set_timestamp_type(stack: Stack, timestamp_type: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        topic = stack.settings.topic_chat_events
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"message.timestamp.type": timestamp_type})]
        )
    finally:
        await admin.close()


@pytest.mark.parametrize(
    ("timestamp_type", "skew_ms"),
    [("LogAppendTime", 600_000), ("CreateTime", 20_000)],
    ids=["log-append-time-10-min-skew", "create-time-within-tolerance"],
)
async def test_the_backlog_gate_is_not_fooled_by_a_producer_whose_clock_runs_ahead(
    make_stack: object, timestamp_type: str, skew_ms: int
) -> None:
    """A worker catching up reads, between a round's request and the join that beat its deadline,
    a record stamped in the future by a fast producer. Before #10 that record's timestamp let
    the deadline fire before the join was read: a false Missed. With LogAppendTime (what
    `topics ensure` sets) the broker's clock stamps records; on a CreateTime topic the gate
    trusts a timestamp only less `producer_clock_tolerance_seconds` (30 s by default)."""
    stack: Stack = await make_stack(kafka_max_batch_records=1)  # type: ignore[operator]
    await _set_timestamp_type(stack, timestamp_type)
    await world(stack)
    requested = now_ms()
    deadline = requested + 2_000
    await stack.request("chat-behind", tta=2, at_ms=requested)
    other = traffic.handoff_requested("chat-other", "site-1", requested, time_to_accept_seconds=60)
    await stack.publisher.send(stack.settings.topic_chat_events, "chat-other", other, requested + skew_ms)
    await stack.join("chat-behind", at_ms=requested + 500)
    await eventually(lambda: now_ms() > deadline + 500, 10, "the deadline to pass while the worker is down")

    await stack.start_worker()
    await stack.settle(tta=1)
    assert stack.missed("chat-behind") == [], "the join beat the deadline: no Missed"
    assert metric(stack, "notifier_rounds_closed_total", outcome="accepted") == 1


# -- 2. producers race ----------------------------------------------------------------------------


async def test_a_request_read_after_the_join_of_its_chat_pages_nobody(stack: Stack) -> None:
    """Before #10: the request started a round that paged every agent for a chat already taken,
    then reported it Missed and sent the visitor the chatbot's apology."""
    await world(stack)
    await stack.start_worker()
    joined_at = now_ms()
    await stack.join("chat-raced", at_ms=joined_at)
    await stack.request("chat-raced", tta=2, at_ms=joined_at - 1_500)  # sent before, delivered after
    await stack.settle(tta=3)
    assert alerts_for(stack, "chat-raced") == []
    assert stack.missed("chat-raced") == [] and stack.chatbot("chat-raced") == []
    assert metric(stack, "notifier_events_ignored_total", why="stale_request") == 1


async def test_the_same_request_resent_under_a_new_id_after_its_round_closed_starts_nothing(
    stack: Stack,
) -> None:
    """Before #10: the re-sent copy started a second round (and a second Missed and chatbot
    message). A genuinely new request for the chat still starts one."""
    await world(stack)
    await stack.start_worker()
    requested = now_ms()
    first = await stack.request("chat-resent", tta=1, at_ms=requested)
    await stack.wait_missed("chat-resent")
    await stack.request("chat-resent", tta=1, at_ms=requested, event_id=str(uuid.uuid4()))
    again = await stack.request("chat-resent", tta=1)  # the visitor asks again, later

    await stack.outputs.wait_for(lambda: len(stack.missed("chat-resent")) >= 2, 30, "the new round's Missed")
    await stack.settle(tta=2)
    ids = [output.value["id"] for output in stack.missed("chat-resent") if output.value]
    assert ids == [f"{first}:missed", f"{again}:missed"]


# -- 3. replays and backlogs ----------------------------------------------------------------------


async def test_a_replayed_request_days_old_is_reported_late_without_a_chatbot_message(stack: Stack) -> None:
    """Before #10: a replay after an offset reset posted the chatbot's apology into a chat two
    days dead. Now its Missed is marked late and counted apart; a request that expired only
    moments before it was read still answers the visitor."""
    await world(stack)
    await stack.start_worker()
    await stack.request("chat-two-days-old", at_ms=now_ms() - 2 * 86_400_000)
    await stack.request("chat-just-expired", tta=60, at_ms=now_ms() - 70_000)
    await stack.wait_missed("chat-just-expired")
    await stack.settle(tta=1)

    [old] = stack.missed("chat-two-days-old")
    assert old.value is not None
    assert old.value["data"]["late"] is True and old.value["data"]["expired_on_arrival"] is True
    assert stack.chatbot("chat-two-days-old") == []
    [recent] = stack.missed("chat-just-expired")
    assert recent.value is not None and recent.value["data"]["late"] is False
    assert alerts_for(stack, "chat-two-days-old") == [] and alerts_for(stack, "chat-just-expired") == []
    assert metric(stack, "notifier_rounds_missed_total", when="expired_on_arrival") == 2
    assert metric(stack, "notifier_rounds_degraded_total", why="missed_without_chatbot") == 1


# -- 4. a sites feed that lags --------------------------------------------------------------------


async def test_a_request_for_a_site_not_known_yet_is_served_once_the_site_arrives(stack: Stack) -> None:
    """Before #10: dead-lettered as unknown_site on the spot; nobody was pushed."""
    await stack.agent("agent-1", sites={"late-site": True}, devices=[ANDROID])
    await stack.start_worker()
    request_id = await stack.request("chat-late-site", "late-site", tta=30, visitor={"name": "Ada"})
    await eventually(
        lambda: metric(stack, "notifier_rounds_degraded_total", why="site_unknown") == 1, 20, "round started"
    )
    await stack.site("late-site", "acct-1")

    await stack.fakes.fcm.messages.wait_for(lambda _: bool(alerts_for(stack, "chat-late-site")), 20)
    [alert] = alerts_for(stack, "chat-late-site")
    assert alert.message["data"]["request_id"] == request_id
    assert "Ada" in alert.message["notification"]["body"]
    assert stack.dead_letters() == []


async def test_a_round_whose_site_never_arrives_still_answers_the_visitor(stack: Stack) -> None:
    """Before #10: dead-lettered; the visitor got no message at all."""
    await world(stack)
    await stack.start_worker()
    await stack.request("chat-no-site", "never-site", tta=1)
    await stack.wait_missed("chat-no-site")
    [message] = stack.chatbot("chat-no-site")
    assert message.value is not None and message.value["data"]["text"]
    assert stack.dead_letters() == []
    assert metric(stack, "notifier_rounds_degraded_total", why="missed_without_site") == 1


# -- 6. pushes follow the round -------------------------------------------------------------------


async def test_an_agent_who_becomes_available_during_the_round_gets_its_alert(stack: Stack) -> None:
    """Before #10: eligibility was decided once, when the request arrived."""
    await world(stack, available=False)
    await stack.start_worker()
    request_id = await stack.request("chat-waiting", tta=30)
    await eventually(lambda: metric(stack, "notifier_rounds_started_total") == 1, 20, "round started")
    assert alerts_for(stack, "chat-waiting") == []
    await stack.agent("agent-1", available=True, sites={"site-1": True}, devices=[ANDROID])

    await stack.fakes.fcm.messages.wait_for(lambda _: bool(alerts_for(stack, "chat-waiting")), 20)
    assert alerts_for(stack, "chat-waiting")[0].message["data"]["request_id"] == request_id
    await stack.join("chat-waiting")
    await stack.fakes.fcm.messages.wait_for(lambda _: bool(closing_for(stack, "chat-waiting")), 20)
    [closing] = closing_for(stack, "chat-waiting")
    assert closing.message["data"]["request_id"] == request_id, "the late agent's phone is cleared too"
    assert len(alerts_for(stack, "chat-waiting")) == 1
